#!/bin/sh
# One-shot MinIO set-up for LungCAD (runs in the minio-init service, image quay.io/minio/mc).
# Idempotent: creates the bucket, a policy limited to that bucket, and the LungCAD service account.
# LungCAD itself never holds the MinIO root credentials.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${LUNGCAD_S3_ACCESS_KEY:?}" "${LUNGCAD_S3_SECRET_KEY:?}" "${LUNGCAD_S3_BUCKET:?}"
ENDPOINT="${MINIO_ENDPOINT:-http://minio:9000}"
POLICY=lungcad-bucket-rw

# Refuse the placeholders that .env.example ships (the same list LungCAD refuses).
for name in MINIO_ROOT_PASSWORD LUNGCAD_S3_SECRET_KEY; do
    eval "value=\${$name}"
    case "$(printf '%s' "$value" | tr '[:upper:]' '[:lower:]')" in
        changeme|change-me|changethis|secret|minioadmin)
            echo "minio-init: $name is a placeholder; set a real secret in .env" >&2
            exit 1;;
    esac
done

attempt=0
until mc alias set lungcad "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
    attempt=$((attempt + 1))
    if [ "$attempt" -ge 10 ]; then
        echo "minio-init: cannot reach MinIO at $ENDPOINT" >&2
        exit 1
    fi
    sleep 3
done

mc mb --ignore-existing "lungcad/$LUNGCAD_S3_BUCKET"
mc anonymous set none "lungcad/$LUNGCAD_S3_BUCKET"

policy_file="$(mktemp)"
cat > "$policy_file" <<POLICY_JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${LUNGCAD_S3_BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${LUNGCAD_S3_BUCKET}/*"]
    }
  ]
}
POLICY_JSON
mc admin policy create lungcad "$POLICY" "$policy_file"
rm -f "$policy_file"

# `user add` on an existing user updates its secret, so rotating LUNGCAD_S3_SECRET_KEY works.
mc admin user add lungcad "$LUNGCAD_S3_ACCESS_KEY" "$LUNGCAD_S3_SECRET_KEY"
if ! mc admin user info lungcad "$LUNGCAD_S3_ACCESS_KEY" | grep -q "$POLICY"; then
    mc admin policy attach lungcad "$POLICY" --user "$LUNGCAD_S3_ACCESS_KEY"
fi
echo "minio-init: bucket $LUNGCAD_S3_BUCKET ready for $LUNGCAD_S3_ACCESS_KEY"
