from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "alerts.incidents"
