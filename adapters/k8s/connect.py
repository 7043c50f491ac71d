"""An API client from a kubeconfig file or, inside a cluster, the pod's service account."""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes import client, config

from core.errors import ExpbotError


def api_client(kubeconfig: Path | None = None, context: str | None = None) -> client.ApiClient:
    """Credentials: the given kubeconfig, else in-cluster, else $KUBECONFIG / ~/.kube/config."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=context,
                client_configuration=configuration,
            )
    except (config.ConfigException, OSError, yaml.YAMLError) as e:  # YAMLError: a malformed kubeconfig
        where = f"EXPBOT_K8S_KUBECONFIG={kubeconfig}" if kubeconfig else "in-cluster, $KUBECONFIG or ~/.kube/config"
        reason = " ".join(str(e).split())  # one line: YAML errors point at the spot over several
        raise ExpbotError(f"cannot load Kubernetes credentials ({where}): {reason}") from e
    return client.ApiClient(configuration)
