"""End to end: the real `./pants docker-mirror-extract` reads rendered Kubernetes manifests in a
throwaway repository, writes a spec file that the generator accepts, and re-extracts into it
keeping its pins and comments; hostile manifests give one clear error and write nothing."""

from __future__ import annotations

from docker_mirror_testutil.pants_repo import PantsRepo, PantsResult

PIN = "sha256:" + "5e" * 32

# What `helm template` prints: several documents, `# Source:` comments, duplicates across
# objects, init containers, a CronJob, and objects without containers.
RENDERED = """\
---
# Source: app/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80}]
---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: "registry.example.com/team/migrate:3"
      containers:
        - name: web
          image: nginx:1.25
        - name: metrics
          image: "prom/statsd-exporter:v0.26.0"
---
# Source: app/templates/cronjob.yaml
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
            - {name: wait, image: "busybox:1.36"}
          containers:
            - {name: backup, image: "registry.example.com/team/backup:1.2"}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: cache
spec:
  template:
    spec:
      initContainers: [{name: sysctl, image: "busybox:1.36"}]
      containers: [{name: redis, image: "redis:7.2"}]
"""

# What the chart's next version adds: a CRD that lists its pods (no `template`), one of which
# names nginx:1.25 under another spelling.
STRIMZI = """\
---
apiVersion: core.strimzi.io/v1
kind: StrimziPodSet
metadata: {name: kafka}
spec:
  pods:
    - kind: Pod
      metadata: {name: kafka-0}
      spec:
        containers:
          - {name: kafka, image: "quay.io/strimzi/kafka:0.45.0-kafka-4.0.0"}
          - {name: proxy, image: "docker.io/library/nginx:1.25"}
"""

BUILD = "docker_mirror_images(name='mirror', sources=['*.images.txt'])\n"


def extract(pants_repo: PantsRepo, *args: str) -> PantsResult:
    return pants_repo.pants("docker-mirror-extract", *args, timeout=900)


def no_traceback(result: PantsResult) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result


def test_extraction_from_a_rendered_chart_and_re_extraction_keeping_pins(pants_repo: PantsRepo) -> None:
    pants_repo.write({"deploy/rendered.yaml": RENDERED, "images/BUILD": BUILD})

    first = extract(pants_repo, "--output=images/app.images.txt", "deploy/rendered.yaml")

    assert first.returncode == 0, first
    spec = (pants_repo.root / "images/app.images.txt").read_text()
    body = spec.split("\n\n", 1)[1]
    assert body == (
        "# CronJob/backup, StatefulSet/cache\n"
        "busybox:1.36\n"
        "# Deployment/web\n"
        "nginx:1.25\n"
        "# Deployment/web\n"
        "prom/statsd-exporter:v0.26.0\n"
        "# StatefulSet/cache\n"
        "redis:7.2\n"
        "# CronJob/backup\n"
        "registry.example.com/team/backup:1.2\n"
        "# Deployment/web\n"
        "registry.example.com/team/migrate:3\n"
    )
    assert "images/app.images.txt: added busybox:1.36 (CronJob/backup, StatefulSet/cache)" in first.stdout
    no_traceback(first)
    # The generator accepts the file: one image per line.
    listed = pants_repo.pants("list", "images::").check()
    assert len([line for line in listed.stdout.splitlines() if "images:mirror#" in line]) == 6, listed

    # Pin two lines and add a note by hand; then the chart moves redis to 7.4, drops statsd, and
    # adds a StrimziPodSet.
    pinned = (
        spec.replace("nginx:1.25\n", f"nginx:1.25@{PIN}  # reviewed\n")
        .replace("busybox:1.36\n", f"busybox:1.36@{PIN}\n")
        .replace("# Deployment/web\nregistry.example.com/team/migrate", "# Deployment/web\n# owned by team-db\nregistry.example.com/team/migrate")
    )
    (pants_repo.root / "images/app.images.txt").write_text(pinned)
    pants_repo.write(
        {
            "deploy/rendered.yaml": RENDERED.replace("redis:7.2", "redis:7.4").replace(
                '        - name: metrics\n          image: "prom/statsd-exporter:v0.26.0"\n', ""
            )
            + STRIMZI
        }
    )

    second = extract(pants_repo, "--output=images/app.images.txt", "deploy/rendered.yaml")

    assert second.returncode == 0, second
    after = (pants_repo.root / "images/app.images.txt").read_text()
    assert after == (
        pinned.replace("# StatefulSet/cache\nredis:7.2", "# StrimziPodSet/kafka\nquay.io/strimzi/kafka:0.45.0-kafka-4.0.0\n# StatefulSet/cache\nredis:7.4")
        .replace("# Deployment/web\nprom/statsd-exporter:v0.26.0\n", "")
        .replace("# Deployment/web\nnginx:1.25@", "# Deployment/web, StrimziPodSet/kafka\nnginx:1.25@")
    )
    # One image under two spellings keeps its line, pin and all.
    assert f"nginx:1.25@{PIN}  # reviewed\n" in after and f"busybox:1.36@{PIN}\n" in after
    assert "images/app.images.txt: added redis:7.4 (StatefulSet/cache)" in second.stdout, second
    assert "added quay.io/strimzi/kafka:0.45.0-kafka-4.0.0 (StrimziPodSet/kafka)" in second.stdout
    assert "removed redis:7.2" in second.stdout and "removed prom/statsd-exporter:v0.26.0" in second.stdout
    assert "2 added, 2 removed, 4 kept" in second.stderr, second

    # Without --output the spec file is printed, and nothing is written.
    printed = extract(pants_repo, "deploy/rendered.yaml")
    assert printed.returncode == 0 and "# StatefulSet/cache\nredis:7.4\n" in printed.stdout, printed


def test_hostile_manifests_give_one_clear_error_and_write_nothing(pants_repo: PantsRepo) -> None:
    bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi")
    )
    pants_repo.write(
        {
            "deploy/bomb.yaml": bomb,
            "deploy/typed.yaml": "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - {name: a, image: 1.25}\n",
            "deploy/template.yaml": 'kind: Pod\nmetadata: {name: q}\nspec: {containers: [{name: b, image: "{{ .Values.image }}"}]}\n',
            "deploy/ok.yaml": "kind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: c, image: nginx:1.25}]}\n",
        }
    )

    result = extract(pants_repo, "--output=images.txt", "deploy/bomb.yaml", "deploy/typed.yaml", "deploy/template.yaml", "deploy/ok.yaml")

    assert result.returncode != 0, result
    no_traceback(result)
    assert "deploy/bomb.yaml: its aliases expand to more than 1000000 nodes (a YAML bomb?) (line " in result.stderr, result
    assert (
        "deploy/typed.yaml:1: Pod/p spec.containers[0].image (line 5): the image is a float \"1.25\", not a string"
        in result.stderr
    ), result
    assert 'deploy/template.yaml:1: Pod/q spec.containers[0].image (line 3): "{{ .Values.image }}" is not a valid image reference' in result.stderr, result
    assert "docker-mirror-extract: nothing written." in result.stderr
    assert not (pants_repo.root / "images.txt").exists()
