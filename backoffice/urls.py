"""The back-office pages, mounted inside the admin site's own URL namespace (``admin:``).

``config/urls.py`` mounts ``admin_site_urls(admin.site)`` at ``admin/`` instead of ``admin.site.urls``: one include,
namespace ``admin``, holding these pages first and then every URL of the admin site. Two includes sharing the
``admin`` namespace would not work (Django reverses only one of them), and replacing ``admin.site`` with an
``AdminSite`` subclass would touch every app's registration. Each view is wrapped in ``site.admin_view`` (login
redirect for anonymous users, staff only, no caching, CSRF); the views check their own permission.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.urls import path

from backoffice import views


def backoffice_urls(site: AdminSite = admin.site) -> list:
    """The back-office pages of ``site``: ``admin:backoffice_users``, ``admin:backoffice_user``,
    ``admin:backoffice_dashboard``."""
    return [
        path("users/", site.admin_view(views.user_search), {"site": site}, name="backoffice_users"),
        path("users/<str:user_id>/", site.admin_view(views.user_detail), {"site": site}, name="backoffice_user"),
        path("dashboard/", site.admin_view(views.dashboard), {"site": site}, name="backoffice_dashboard"),
    ]


def admin_site_urls(site: AdminSite = admin.site) -> tuple[list, str, str]:
    """What ``site.urls`` returns, with the back-office pages in front: ``path("admin/", admin_site_urls(site))``."""
    patterns, app_name, namespace = site.urls
    return [*backoffice_urls(site), *patterns], app_name, namespace
