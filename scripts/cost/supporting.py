"""Prices of the services around the endpoint: ECR and S3 storage (with the lifecycle
`gen3d deploy` configures), CloudWatch logs and alarms, data processed, Lambda, SNS, and
the instance price lookup. Every figure comes from the PriceTable."""

from __future__ import annotations

from gen3d.aws.storage import Lifecycle
from gen3d.cost.prices import PriceTable
from gen3d.cost.workload import DAYS_PER_MONTH, Workload


def fixed_storage(w: Workload, prices: PriceTable) -> dict[str, float]:
    """Paid every month whatever the volume: the image in ECR, the model in S3."""
    return {
        "ecr_image": w.profile.image_gb * prices.value("ecr.storage_gb_month"),
        "s3_model_artifact": w.profile.artifact_gb * prices.value("s3.standard_gb_month"),
    }


def s3_payloads(w: Workload, prices: PriceTable) -> float:
    """Async/batch inputs and outputs in S3 under the lifecycle `gen3d deploy` sets
    (scripts/aws/storage.py): Standard, then Standard-IA, then Glacier Flexible
    Retrieval, then deleted. Steady state: a month's objects times the days in each class."""
    lc = Lifecycle()
    a = w.assumptions
    n = w.images_per_month
    gb = n * (a.request_mb + a.response_mb) / 1024.0
    months_in = {
        "s3.standard_gb_month": lc.infrequent_access_days / DAYS_PER_MONTH,
        "s3.standard_ia_gb_month": (lc.glacier_days - lc.infrequent_access_days) / DAYS_PER_MONTH,
        "s3.glacier_flexible_gb_month": (lc.expire_days - lc.glacier_days) / DAYS_PER_MONTH,
    }
    thousands = 2 * n / 1000  # one input and one output object per image
    return (
        sum(gb * months * prices.value(key) for key, months in months_in.items())
        + thousands * prices.value("s3.put_per_1000")
        + thousands * prices.value("s3.get_per_1000")
        + thousands * prices.value("s3.transition_ia_per_1000")
        + thousands * prices.value("s3.transition_glacier_per_1000")
    )


def cloudwatch_logs(w: Workload, prices: PriceTable, instance_hours: float) -> float:
    a = w.assumptions
    ingest_gb = (
        w.images_per_month * a.log_kb_per_request / 1024**2
        + instance_hours * a.log_mb_per_instance_hour / 1024
    )
    stored_gb = ingest_gb * a.log_retention_days / DAYS_PER_MONTH
    return ingest_gb * prices.value("cloudwatch.logs_ingest_gb") + stored_gb * prices.value(
        "cloudwatch.logs_storage_gb_month"
    )


def data_processed(w: Workload, prices: PriceTable) -> float:
    a = w.assumptions
    gb = w.images_per_month * (a.request_mb + a.response_mb) / 1024.0
    return gb * prices.value("sagemaker.data_processed_gb")


def lambda_invocations(w: Workload, prices: PriceTable, invocations: float) -> float:
    a = w.assumptions
    return invocations / 1e6 * prices.value("lambda.request_per_million") + (
        invocations * a.lambda_memory_gb * a.lambda_seconds * prices.value("lambda.gb_second")
    )


def sns_notifications(prices: PriceTable, notifications: float) -> float:
    return (
        notifications
        / 1e6
        * (prices.value("sns.publish_per_million") + prices.value("sns.https_delivery_per_million"))
    )


def alarms(prices: PriceTable, count: int) -> float:
    return count * prices.value("cloudwatch.alarm_month")


def instance_price(prices: PriceTable, kind: str, instance_type: str) -> float:
    return prices.value(f"sagemaker.{kind}.{instance_type}")
