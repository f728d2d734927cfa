from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import views as accounts_views
from crmhub import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("customers/", views.customer_list, name="customer-list"),
    path("customers/<int:pk>/", views.customer_detail, name="customer-detail"),
    path("customers/<int:pk>/edit/", views.customer_edit, name="customer-edit"),
    path("customers/<int:pk>/restore/", views.customer_restore, name="customer-restore"),
    path("customers/<int:pk>/history/", accounts_views.customer_history, name="customer-history"),
    path("imports/", include("imports.urls")),
    path("dedup/", include("dedup.urls")),
    path("accounts/", include("accounts.urls")),
    path("quality/", include("crmhub.quality_urls")),
    path("privacy/", include("crmhub.privacy_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("crmhub.api.urls")),
]

admin.site.site_header = "crmhub"
admin.site.site_title = "crmhub"
