import os

from django.core.asgi import get_asgi_application

# Under ASGI (uvicorn, daphne...) the status stream holds no thread while it waits.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
application = get_asgi_application()
