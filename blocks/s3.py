"""S3 credentials as a Prefect Block with a secret field (masked in the UI, never logged).

    from blocks.s3 import S3Credentials
    S3Credentials(aws_access_key_id="AKIA...", aws_secret_access_key="...", region_name="eu-west-1").save("lake")
    # then in a policy:  s3_credentials = "lake"

Without a Block, credentials come from the environment (AWS_ACCESS_KEY_ID, ...), as boto does.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class S3Credentials(Block):
    _block_type_name = "Ray FT S3 Credentials"
    _block_type_slug = "rayft-s3-credentials"
    _description = "Credentials prefect-ray-ft uses for s3:// SOURCE and DEST (pyarrow's S3 filesystem)."

    aws_access_key_id: str = Field(description="Access key id.")
    aws_secret_access_key: SecretStr = Field(description="Secret access key (masked, never logged).")
    region_name: str | None = Field(None, description="Region, e.g. eu-west-1. Default: the environment's.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, ...). Default: AWS.")

    def options(self) -> tuple[tuple[str, str | None], ...]:
        """What `tasks.storage.configure_s3` takes; travels to Ray workers inside the job, not the env."""
        return (("access_key", self.aws_access_key_id),
                ("secret_key", self.aws_secret_access_key.get_secret_value()),
                ("region", self.region_name), ("endpoint_override", self.endpoint_url))
