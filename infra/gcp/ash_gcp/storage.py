"""The GCS bucket: workspace snapshots (ASH_SNAPSHOT_URL=gs://<bucket>/snapshots) and the release archive the
instances install from (artifacts/). Uniform access, public access prevention, versioning, a lifecycle; encrypted at
rest by Google (add a CMEK key with `ash:kmsKey` if policy demands it)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass
class StorageArgs:
    region: str
    archive: pulumi.Archive
    archive_key: str
    writer: pulumi.Input[str]  # "serviceAccount:<email>"
    runner: pulumi.Input[str] | None = None  # the runners' service account, in multi-machine mode
    noncurrent_days: int = 30
    kms_key: str | None = None


class Storage(pulumi.ComponentResource):
    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = gcp.storage.Bucket(
            name,
            location=args.region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            encryption=gcp.storage.BucketEncryptionArgs(default_kms_key_name=args.kms_key) if args.kms_key else None,
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=args.noncurrent_days, with_state="ARCHIVED"
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="AbortIncompleteMultipartUpload"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=7),
                ),
            ],
            force_destroy=False,
            opts=child,
        )
        # Object read/write in this bucket only (no bucket administration, no other bucket).
        gcp.storage.BucketIAMMember(
            name, bucket=self.bucket.name, role="roles/storage.objectUser", member=args.writer, opts=child
        )
        if args.runner is not None:
            self._runner_access(name, args.runner, child)
        self.artifact = gcp.storage.BucketObject(
            f"{name}-artifact", bucket=self.bucket.name, name=args.archive_key, source=args.archive, opts=child
        )
        self.register_outputs({"bucket": self.bucket.name})

    def _runner_access(self, name: str, runner: pulumi.Input[str], opts: pulumi.ResourceOptions) -> None:
        """Runners: objects under snapshots/ read and write, under artifacts/ read only (a runner cannot replace the
        release the server installs), and the bucket's metadata and object names (the snapshot store checks the
        bucket at start). IAM conditions on object names need uniform bucket-level access, which the bucket has."""
        objects = self.bucket.name.apply(lambda bucket: f"projects/_/buckets/{bucket}/objects")
        grants = {
            "snapshots": ("roles/storage.objectUser", "read and write session snapshots"),
            "artifacts": ("roles/storage.objectViewer", "read the release archive"),
        }
        for prefix, (role, description) in grants.items():
            expression = pulumi.Output.concat('resource.name.startsWith("', objects, f'/{prefix}/")')
            gcp.storage.BucketIAMMember(
                f"{name}-runner-{prefix}",
                bucket=self.bucket.name,
                role=role,
                member=runner,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title=f"ash-runner-{prefix}",
                    description=f"Ash runners: {description}",
                    expression=expression,
                ),
                opts=opts,
            )
        gcp.storage.BucketIAMMember(
            f"{name}-runner-bucket",
            bucket=self.bucket.name,
            role="roles/storage.legacyBucketReader",  # storage.buckets.get and storage.objects.list, nothing else
            member=runner,
            opts=opts,
        )
