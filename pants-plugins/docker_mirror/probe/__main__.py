import sys

from docker_mirror.probe.cli import main

if __name__ == "__main__":
    sys.exit(main())
