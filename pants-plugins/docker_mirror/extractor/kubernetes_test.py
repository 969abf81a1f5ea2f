"""Tests for docker_mirror.extractor.kubernetes and the extractor's program: which images of which
objects are found, and what the program writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from docker_mirror.extractor.__main__ import main
from docker_mirror.extractor.kubernetes import images_in_document
from docker_mirror.extractor.yaml_documents import read_documents

MANIFESTS = """\
# Source: chart/templates/web.yaml
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers:
        - {name: migrate, image: "registry.example.com/team/migrate:3"}
      containers:
        - name: web
          image: nginx:1.25
        - name: sidecar
          image: busybox:1.36
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: backup, image: "busybox:1.36"}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug}
spec:
  containers: [{name: a, image: alpine:3.19}]
  ephemeralContainers: [{name: dbg, image: "ghcr.io/org/debug@sha256:%s"}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: canary}
spec:
  template:
    spec:
      containers: [{name: app, image: "team/app:2"}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {image: "not-a-container:1"}
---
apiVersion: v1
kind: List
items:
  - kind: StatefulSet
    metadata: {name: db}
    spec: {template: {spec: {containers: [{name: db, image: postgres:16}]}}}
""" % ("ab" * 32)


def found(text: str) -> list[tuple]:
    return [
        (f.document, f.kind, f.name, f.field, f.value)
        for document in read_documents(text.encode())
        for f in images_in_document(document)
    ]


def test_images_of_every_workload_kind_and_pod_template() -> None:
    assert sorted(found(MANIFESTS)) == sorted(
        [
            (1, "Deployment", "web", "spec.template.spec.initContainers[0].image", "registry.example.com/team/migrate:3"),
            (1, "Deployment", "web", "spec.template.spec.containers[0].image", "nginx:1.25"),
            (1, "Deployment", "web", "spec.template.spec.containers[1].image", "busybox:1.36"),
            (2, "CronJob", "backup", "spec.jobTemplate.spec.template.spec.containers[0].image", "busybox:1.36"),
            (3, "Pod", "debug", "spec.containers[0].image", "alpine:3.19"),
            (3, "Pod", "debug", "spec.ephemeralContainers[0].image", f"ghcr.io/org/debug@sha256:{'ab' * 32}"),
            (4, "Rollout", "canary", "spec.template.spec.containers[0].image", "team/app:2"),
            (6, "StatefulSet", "db", "items[0].spec.template.spec.containers[0].image", "postgres:16"),
        ]
    )


def test_every_workload_kind_is_read_at_its_place() -> None:
    for kind in ("DaemonSet", "ReplicaSet", "Job", "StatefulSet", "ReplicationController"):
        text = f"kind: {kind}\nmetadata: {{name: x}}\nspec: {{template: {{spec: {{containers: [{{image: 'a:1'}}]}}}}}}\n"
        assert [f[1:] for f in found(text)] == [(kind, "x", "spec.template.spec.containers[0].image", "a:1")]


def test_objects_without_pod_specs_and_odd_shapes_give_nothing() -> None:
    for text in (
        "kind: Service\nspec: {ports: [{port: 80}]}\n",
        "kind: Deployment\nspec: {template: {spec: {containers: {image: a:1}}}}\n",
        "kind: Deployment\nspec: [1, 2]\n",
        "- kind: Pod\n",
        "just a string\n",
        "kind: Pod\nspec: {containers: [{name: no-image}, 5, [x]]}\n",
    ):
        assert found(text) == [], text


# Issue 18: pod specs that are not under a `template`, as real manifests hold them.
STRIMZI_POD_SET = """\
apiVersion: core.strimzi.io/v1
kind: StrimziPodSet
metadata: {name: my-kafka-kafka}
spec:
  pods:
""" + "".join(
    f"""\
  - apiVersion: v1
    kind: Pod
    metadata: {{name: my-kafka-kafka-{n}}}
    spec:
      containers:
      - name: kafka
        image: quay.io/strimzi/kafka:0.45.0-kafka-4.0.0
"""
    for n in range(3)
)
OCM_POLICY = """\
apiVersion: policy.open-cluster-management.io/v1
kind: Policy
metadata: {name: argo-example}
spec:
  policy-templates:
    - objectDefinition:
        kind: ConfigurationPolicy
        metadata: {name: example-pod}
        spec:
          object-templates:
            - complianceType: musthave
              objectDefinition:
                apiVersion: v1
                kind: Pod
                metadata: {name: foobar}
                spec:
                  containers:
                    - image: 'registry.redhat.io/rhel9/httpd-24:latest'
                      name: httpd
"""
MISSPELT_KIND = """\
apiVersion: v1
ind: Pod
metadata: {name: busybox2}
spec:
  containers:
  - image: busybox
    name: busybox
"""


def test_the_pods_of_a_strimzi_pod_set_are_found() -> None:
    assert found(STRIMZI_POD_SET) == [
        (1, "StrimziPodSet", "my-kafka-kafka", f"spec.pods[{n}].spec.containers[0].image",
         "quay.io/strimzi/kafka:0.45.0-kafka-4.0.0")
        for n in range(3)
    ]  # fmt: skip


def test_a_pod_that_a_policy_wraps_is_found_under_the_policy() -> None:
    assert found(OCM_POLICY) == [
        (1, "Policy", "argo-example",
         "spec.policy-templates[0].objectDefinition.spec.object-templates[0].objectDefinition.spec"
         ".containers[0].image",
         "registry.redhat.io/rhel9/httpd-24:latest"),
    ]  # fmt: skip


def test_an_object_without_a_kind_is_searched_too() -> None:
    assert found(MISSPELT_KIND) == [(1, None, "busybox2", "spec.containers[0].image", "busybox")]
    assert found("spec: {containers: [{image: a:1}]}\n") == [(1, None, None, "spec.containers[0].image", "a:1")]


def test_container_lists_anywhere_of_any_kind() -> None:
    text = """\
- k8sOperation: create
  unstructuredObj:
    kind: Job
    metadata: {name: hello}
    spec: {template: {spec: {containers: [{name: a, image: "busybox:1.28"}]}}}
---
kind: PodList
items:
  - {kind: Pod, metadata: {name: p1}, spec: {initContainers: [{image: "a:1"}], containers: [{image: "b:1"}]}}
  - {kind: Pod, metadata: {name: p2}, spec: {containers: [{image: "c:1"}]}}
---
kind: DeploymentConfig
metadata: {name: dc}
spec: {template: {spec: {containers: [{image: "d:1"}]}}}
---
kind: AdvancedCronJob
metadata: {name: acj}
spec: {template: {broadcastJobTemplate: {spec: {template: {spec: {containers: [{image: "e:1"}]}}}}}}
"""
    assert found(text) == [
        (1, "Job", "hello", "[0].unstructuredObj.spec.template.spec.containers[0].image", "busybox:1.28"),
        (2, "Pod", "p1", "items[0].spec.initContainers[0].image", "a:1"),
        (2, "Pod", "p1", "items[0].spec.containers[0].image", "b:1"),
        (2, "Pod", "p2", "items[1].spec.containers[0].image", "c:1"),
        (3, "DeploymentConfig", "dc", "spec.template.spec.containers[0].image", "d:1"),
        (4, "AdvancedCronJob", "acj",
         "spec.template.broadcastJobTemplate.spec.template.spec.containers[0].image", "e:1"),
    ]  # fmt: skip


def test_a_string_called_image_outside_a_container_list_is_not_an_image() -> None:
    for text in (
        "kind: ConfigMap\ndata: {image: 'nginx:1', containers: 'x'}\n",
        # A CRD's schema: `containers` is a mapping there.
        "kind: CustomResourceDefinition\nspec: {versions: [{schema: {openAPIV3Schema: {properties:"
        " {containers: {type: array, items: {properties: {image: {type: string}}}}}}}}]}\n",
        # A Prometheus CR's own image is the operator's to run, not a container list's.
        "kind: Prometheus\nspec: {image: 'quay.io/prometheus/prometheus:v2.37.0'}\n",
        "kind: Pod\nstatus: {containerStatuses: [{image: 'alpine:latest'}]}\n",
        # Kyverno's validate patterns match objects, and are none.
        "kind: ClusterPolicy\nspec: {rules: [{validate: {pattern: {spec: {containers: [{image: '!*:latest'}]}},"
        " anyPattern: [{spec: {initContainers: [{image: '*'}]}}]}}]}\n",
    ):
        assert found(text) == [], text


def test_the_search_is_bounded_by_what_the_reader_accepts() -> None:
    # As deep as the reader goes (200 levels), a container list is found: no recursion.
    depth = 194
    deep = "a: " + "{b: " * depth + "{containers: [{image: 'a:1'}]}" + "}" * depth + "\n"
    assert [f[3] for f in found(deep)] == ["a" + ".b" * depth + ".containers[0].image"]
    # Aliases expanding to two thirds of what the reader accepts (679,000 nodes): each path to a
    # container is one image, found in about a second.
    shared = "a: &a {containers: [{image: 'a:1'}]}\n" + "".join(
        f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]\n" for p, n in zip("abcde", "bcdef")
    )
    started = time.monotonic()
    assert len(found(shared)) == 111_111
    assert time.monotonic() - started < 60


def test_non_string_images_are_found_as_they_are() -> None:
    values = [f[4] for f in found("kind: Pod\nspec: {containers: [{image: 1.0}, {image: [x]}, {image: }]}\n")]
    assert [type(v).__name__ for v in values] == ["Scalar", "list", "Scalar"]


def test_the_program_writes_images_and_errors_per_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(MANIFESTS)
    (tmp_path / "bad.yaml").write_text("kind: Pod\nspec: {containers: [{image: 7}]}\n---\na: [\n")
    (tmp_path / "bomb.yaml").write_text(
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]\n" for p, n in zip("abcdefg", "bcdefgh"))
    )
    (tmp_path / "request.json").write_text(
        json.dumps({"files": [str(tmp_path / name) for name in ("good.yaml", "bad.yaml", "bomb.yaml", "gone.yaml")]})
    )

    assert main(["extractor", str(tmp_path / "request.json"), str(tmp_path / "result.json")]) == 0

    good, bad, bomb, gone = json.loads((tmp_path / "result.json").read_text())["files"]
    assert good["error"] is None and len(good["images"]) == 8
    assert good["images"][1] == {
        "document": 1, "kind": "Deployment", "name": "web", "line": 12,
        "field": "spec.template.spec.containers[0].image", "image": "nginx:1.25",
    }
    assert bad["error"].startswith("invalid YAML: ") and bad["error"].endswith("(line 5)")
    assert "YAML bomb" in bomb["error"]
    assert gone["error"].startswith("could not be read: FileNotFoundError")


def test_ten_megabytes_of_manifests_are_read_in_bounded_time(tmp_path: Path) -> None:
    document = (
        "---\nkind: Deployment\nmetadata: {name: web-%d}\nspec:\n  template:\n    spec:\n"
        "      containers:\n        - {name: web, image: 'nginx:1.%d', env: [{name: A, value: '1'}]}\n"
    )
    text = "".join(document % (n, n % 50) for n in range(75_000))
    assert len(text) > 10_000_000
    (tmp_path / "big.yaml").write_text(text)
    (tmp_path / "request.json").write_text(json.dumps({"files": [str(tmp_path / "big.yaml")]}))

    started = time.monotonic()
    main(["extractor", str(tmp_path / "request.json"), str(tmp_path / "result.json")])
    elapsed = time.monotonic() - started

    (result,) = json.loads((tmp_path / "result.json").read_text())["files"]
    assert result["error"] is None and len(result["images"]) == 75_000
    assert elapsed < 120, f"{elapsed:.1f} s"
