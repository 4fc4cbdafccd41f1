"""deploy/: the Kubernetes, KServe and TF Serving files parse and agree with each other.

The batching and monitoring files are TF Serving text protos. tensorflow-serving-api does
not ship those two messages, so they are declared here with TF Serving's field names and
types (session_bundle_config.proto's BatchingParameters, monitoring_config.proto's
MonitoringConfig): `text_format` then refuses an unknown or mistyped field, as the
server would.
"""

from pathlib import Path

import pytest
import yaml
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,  # noqa: F401  (registers Int64Value)
)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
F = descriptor_pb2.FieldDescriptorProto


def _messages():
    """BatchingParameters and MonitoringConfig, built from their field lists."""
    pool = descriptor_pool.Default()
    proto = descriptor_pb2.FileDescriptorProto(
        name="bertclf_test_serving_config.proto",
        package="bertclf_test",
        dependency=["google/protobuf/wrappers.proto"],
    )
    int64 = ".google.protobuf.Int64Value"
    batching = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(
        ["max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"],
        start=1,
    ):
        batching.field.add(
            name=name, number=number, type=F.TYPE_MESSAGE, type_name=int64, label=F.LABEL_OPTIONAL
        )
    batching.field.add(
        name="thread_pool_name",
        number=5,
        type=F.TYPE_MESSAGE,
        label=1,
        type_name=".google.protobuf.StringValue",
    )
    batching.field.add(
        name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED
    )
    batching.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=1)
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=1)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=1)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=F.TYPE_MESSAGE,
        label=1,
        type_name=".bertclf_test.PrometheusConfig",
    )
    try:
        pool.FindFileByName(proto.name)  # added by an earlier call in this process
    except KeyError:
        pool.Add(proto)
    get = message_factory.GetMessageClass
    return (
        get(pool.FindMessageTypeByName("bertclf_test.BatchingParameters")),
        get(pool.FindMessageTypeByName("bertclf_test.MonitoringConfig")),
    )


@pytest.fixture(scope="module")
def configs():
    batching_cls, monitoring_cls = _messages()
    batching = text_format.Parse((DEPLOY / "batching_parameters.txt").read_text(), batching_cls())
    monitoring = text_format.Parse((DEPLOY / "monitoring.config").read_text(), monitoring_cls())
    return batching, monitoring


def _docs(name: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d}


def test_text_protos_parse_and_refuse_unknown_fields(configs):
    batching, monitoring = configs
    assert batching.max_batch_size.value >= 1 and batching.batch_timeout_micros.value > 0
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path.startswith("/")
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 1 }", type(batching)())


def test_kubernetes_deployment_service_and_autoscaler_agree(configs):
    _, monitoring = configs
    docs = _docs("tfserving.yaml")
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    deployment = docs["Deployment"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "tensorflow/serving:2.19.1"  # the op audit's default target
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"])
    name = args["model_name"]
    assert args["model_base_path"] == f"/models/{name}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(args["rest_api_port"]) == 8501
    assert ports["grpc"] == int(args["port"]) == 8500
    # Readiness is TF Serving's model status on the REST port.
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{name}", "port": "http"}
    # The batching and monitoring files come from the ConfigMap made from deploy/.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for flag, file in (
        ("batching_parameters_file", "batching_parameters.txt"),
        ("monitoring_config_file", "monitoring.config"),
    ):
        assert args[flag] == f"{mounts['config']}/{file}" and (DEPLOY / file).is_file()
    assert args["enable_batching"] == "true"
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/path"] == monitoring.prometheus_config.path
    assert notes["prometheus.io/port"] == str(ports["http"])
    service = docs["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert container["resources"]["requests"]["cpu"]  # CPU utilisation needs a request


def test_kserve_inference_service():
    isvc = _docs("kserve.yaml")["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["runtimeVersion"] == "2.19.1"
    assert "storageUri" in model


def test_deploy_md_names_every_file():
    text = (DEPLOY / "DEPLOY.md").read_text()
    for name in (
        "k8s/tfserving.yaml",
        "k8s/kserve.yaml",
        "batching_parameters.txt",
        "monitoring.config",
        "haproxy.cfg",
        "k8s/train-multiworker.yaml",
    ):
        assert name in text, name


def test_multiworker_job_gives_each_pod_a_valid_tf_config(tmp_path):
    import subprocess

    from bertclf.training.cluster import read_tf_config

    docs = _docs("train-multiworker.yaml")
    job, service = docs["Job"], docs["Service"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert (
        pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    )
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["WORKERS"]) == spec["completions"]
    # Run the pod's own script, printing TF_CONFIG instead of training.
    script = container["args"][0].replace("exec bertclf train", 'echo "$TF_CONFIG|$resume" #')
    run = tmp_path / "run"
    for index in range(spec["completions"]):
        out = subprocess.run(
            ["sh", "-c", script],
            env={"WORKERS": env["WORKERS"], "JOB_COMPLETION_INDEX": str(index), "RUN": str(run)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        tf_config, resume = out.strip().split("|")
        assert resume == ""  # no run yet: a first start
        task = read_tf_config(tf_config)
        assert task.index == index and task.workers == spec["completions"]
        assert task.is_chief == (index == 0)
        port = container["ports"][0]["containerPort"]
        assert (
            task.cluster["worker"][index]
            == f"{job['metadata']['name']}-{index}.{pod['subdomain']}:{port}"
        )
    assert "--strategy multiworker" in container["args"][0]
    # A restarted pod (the run exists) resumes; exit status 42 (preempted) is no failure.
    run.mkdir()
    (run / "config.json").write_text("{}")
    env_run = {"WORKERS": env["WORKERS"], "JOB_COMPLETION_INDEX": "1", "RUN": str(run)}
    out = subprocess.run(["sh", "-c", script], env=env_run, capture_output=True, text=True)
    assert out.stdout.strip().endswith("|--resume")
    assert pod["restartPolicy"] == "Never" and spec["backoffLimit"] >= 1
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "Ignore" and rule["onExitCodes"]["values"] == [42]
    assert rule["onExitCodes"]["containerName"] == container["name"]
