"""Tells a joke in the chat

YOUR PACKAGE: handler.py, settings.py and any module you add are yours; `copier update` never touches
them. The runtime that serves them belongs to the template, in ../sdk_runtime/ (never edit it).
`joke_of_the_day:app` is the WSGI app gunicorn serves, built on first access.
"""

from sdk_runtime import wsgi_app_attribute

__getattr__ = wsgi_app_attribute(__name__)
