"""PostgreSQL: the embedded server, connections, the schema and bulk I/O."""

from .database import ENV_URL, Database, lab_server_url
from .server import embedded_url, server_status, start_server, stop_server
from .tables import delete_image, read_label_image

__all__ = [
    "ENV_URL",
    "Database",
    "delete_image",
    "embedded_url",
    "lab_server_url",
    "read_label_image",
    "server_status",
    "start_server",
    "stop_server",
]
