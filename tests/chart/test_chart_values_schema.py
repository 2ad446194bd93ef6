"""values.schema.json: a wrong value fails `helm template` (as it fails install and upgrade) saying where and why."""
import pytest

from chartlib import requires_helm, template

pytestmark = requires_helm

MODEL = {"name": "fraud", "uri": "models:/fraud@champion"}


@pytest.mark.parametrize("values, message", [
    ({"tracking": {"grpcPort": 70000}}, "at '/tracking/grpcPort': maximum: got 70,000, want 65,535"),
    ({"gateway": {"httpPort": "5000"}}, "at '/gateway/httpPort': got string, want integer"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ({"tracking": {"replicas": 3}}, "at '/tracking': additional properties 'replicas' not allowed"),
    ({"postgresql": {"enabled": "yes"}}, "at '/postgresql/enabled': got string, want boolean"),
    ({"database": {"poolSize": 0}}, "at '/database/poolSize': minimum: got 0, want 1"),
    ({"postgresql": {"enabled": False}}, "at '/externalDatabase/url': minLength: got 0, want 1"),
    ({"postgresql": {"enabled": False}, "externalDatabase": {"url": "sqlite:///mlgrid.db"}}, "at '/externalDatabase/url'"),
    ({"serving": {"enabled": True}}, "at '/serving/models': minItems: got 0, want 1"),
    ({"serving": {"enabled": True, "models": [{"name": "fraud", "uri": "/tmp/model"}]}}, "at '/serving/models/0/uri'"),
    ({"serving": {"enabled": True, "models": [{**MODEL, "batch": 8}]}}, "at '/serving/models/0': additional properties 'batch' not allowed"),
    ({"serving": {"maxBatchWaitMs": 1.5}}, "at '/serving/maxBatchWaitMs': got number, want integer"),
    ({"minio": {"bucket": "Not_A_Bucket"}}, "at '/minio/bucket'"),
    ({"s3": {"endpoint": "minio:9000"}}, "at '/s3/endpoint'"),
    ({"gateway": {"service": {"type": "Ingress"}}}, "at '/gateway/service/type': value must be one of 'ClusterIP', 'NodePort', 'LoadBalancer'"),
    ({"gateway": {"autoscaling": {"targetCPUUtilizationPercentage": 150}}}, "at '/gateway/autoscaling/targetCPUUtilizationPercentage'"),
    ({"networkPolicy": {"externalCIDRs": ["everywhere"]}}, "at '/networkPolicy/externalCIDRs/0'"),
    ({"monitoring": {"serviceMonitor": {"interval": "often"}}}, "at '/monitoring/serviceMonitor/interval'"),
    ({"tracking": {"resources": {"requests": {"cpu": "lots"}}}}, "at '/tracking/resources/requests/cpu'"),
    ({"auth": {"defaultPermission": "WRITE"}},
     "at '/auth/defaultPermission': value must be one of 'READ', 'USE', 'EDIT', 'MANAGE', 'NO_PERMISSIONS'"),
    ({"auth": {"enabled": "on"}}, "at '/auth/enabled': got string, want boolean"),
    ({"auth": {"admin": {"username": ""}}}, "at '/auth/admin/username'"),
    ({"auth": {"cacheSeconds": -1}}, "at '/auth/cacheSeconds': minimum: got -1, want 0"),
    ({"auth": {"oidc": {"issuer": "dex.example.com"}}}, "at '/auth/oidc/issuer'"),
    ({"auth": {"oidc": {"issuer": "https://dex.example.com"}}}, "at '/auth/oidc/audience': minLength: got 0, want 1"),
    ({"auth": {"oidc": {"adminGroups": "admins"}}}, "at '/auth/oidc/adminGroups': got string, want array"),
    ({"serving": {"auth": {"token": "abc"}}}, "at '/serving/auth': additional properties 'token' not allowed"),
])
def test_wrong_values_fail_with_a_clear_message(values, message):
    result = template(values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_good_values_pass():
    result = template({"postgresql": {"enabled": False}, "externalDatabase": {"url": "postgresql://u:p@db:5432/ml"},
                       "serving": {"enabled": True, "models": [{**MODEL, "workers": 0, "maxBatchSize": 64, "maxBatchWaitMs": 2.5}]}})
    assert result.returncode == 0, result.stderr
