"""One module per scenario, in RESULTS.md's order:

  startup.py       where Pants' time goes (cold start, profile, warm start)
  generation.py    generation at scale: a spec file against hand-written targets, cold and warm
  mirroring.py     first mirror and re-mirror, against `skopeo sync` and a docker loop
  changed_line.py  one changed line: `pants --changed-since=HEAD~1 publish`
  scale.py         copy mode at scale against `skopeo sync --all`
  referrers.py     carrying signatures, attestations and SBOMs
  large_images.py  a first mirror of images with real layers over a WAN-like link
  platforms.py     images of 3 platforms mirrored whole and with `platforms` keeping 2
  air_gap.py       an archive for an air gap: `pants package` cold and again, publishing from it
  before_after.py  a no-op by this checkout's plugin and another's (`--before`), with skopeo sync

Each has an untimed `prepare` (files, registries, images) where it needs one, and timed
`run_*` functions that return a `report.Section` (startup: the numbers the targets cite).
`benchmarks/__main__.py` shares the untimed set-up between them (two repositories, each with one
pantsd) and runs them one at a time.
"""
