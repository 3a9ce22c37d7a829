"""Which worker ran a task, as Airflow records it (task_instance.hostname).

Airflow calls `[core] hostname_callable` on every worker. Its default, the machine's
FQDN, cannot tell apart several workers on one host (one Celery worker per GPU on a
multi-GPU box, or the distributed test). Set

    AIRFLOW__CORE__HOSTNAME_CALLABLE=ocr_tasks.worker_identity.worker_hostname
    OCR_RETRAIN_WORKER_NAME=gpu0@trainbox-3

and the UI, the task logs and the metadata database name the worker, not only the host.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME_ENV = "OCR_RETRAIN_WORKER_NAME"


def worker_hostname() -> str:
    return os.environ.get(WORKER_NAME_ENV, "").strip() or socket.getfqdn()
