"""The answers bucket (S3): bodies of answers too large for a prompt's item (domain.answers).

Objects are UTF-8 text under `userId/promptId/runCount`; the bucket's lifecycle expires them with
the prompts (PROMPT_RETENTION_DAYS). The consumer only puts, the API only gets.
"""

from botocore.exceptions import ClientError

from promptsvc.adapters.clients import client


class S3AnswerBodies:
    def __init__(self, bucket: str) -> None:
        self._bucket = bucket

    def put(self, key: str, text: str) -> None:
        client("s3").put_object(
            Bucket=self._bucket,
            Key=key,
            Body=text.encode("utf-8", "surrogatepass"),
            ContentType="text/plain; charset=utf-8",
        )

    def get(self, key: str) -> str | None:
        try:
            body = client("s3").get_object(Bucket=self._bucket, Key=key)["Body"]
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        with body:
            return str(body.read().decode("utf-8", "surrogatepass"))
