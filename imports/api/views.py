"""Import runs over the API: upload a file, follow a run, cancel, commit a dry run, roll back."""

from __future__ import annotations

import os

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from crmhub.services import source_get_or_create
from imports import selectors, services
from imports.api.serializers import ImportRunSerializer, ImportUploadSerializer
from imports.models import ImportRun


class ImportRefusedError(exceptions.APIException):
    status_code = 400
    default_code = "import_refused"


def _refused(exc: Exception) -> ImportRefusedError:
    return ImportRefusedError(str(exc))


class ImportRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Import runs. ``POST`` a multipart upload (file, source, optional template, key, dry_run)
    to start one; without a template the headers are mapped automatically."""

    serializer_class = ImportRunSerializer
    queryset = ImportRun.objects.none()
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):  # noqa: ANN201
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return selectors.import_run_list(user=self.request.user)

    def initial(self, request: Request, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().initial(request, *args, **kwargs)
        if not services.user_may_import(request.user):
            raise exceptions.PermissionDenied("Importing needs the steward, admin or API-client role.")

    @extend_schema(request=ImportUploadSerializer, responses={202: ImportRunSerializer})
    def create(self, request: Request) -> Response:
        form = ImportUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        upload = data["file"]
        source, _created = source_get_or_create(code=data["source"])
        staged = None
        try:
            staged = services.upload_stage(fileobj=upload, filename=upload.name)
            layout = services.upload_inspect(name=staged, filename=upload.name, sheet=data["sheet"] or None)
            keys = [k.strip() for k in data["key"].split(",") if k.strip()]
            plan = services.plan_resolve(
                source=source,
                layout=layout,
                template_name=data["template"],
                auto_map=not data["template"],
                key_columns=keys,
            )
            plan.dayfirst = plan.dayfirst or data["dayfirst"]
            run = services.import_run_create(
                source=source,
                staged_name=staged,
                filename=upload.name,
                layout=layout,
                plan=plan,
                user=request.user,
                dry_run=data["dry_run"],
            )
        except services.ImportRefused as exc:
            if staged:
                services.upload_discard(name=staged)
            raise _refused(exc) from exc
        body = ImportRunSerializer(run).data
        body["mapping"] = run.mapping
        body["key_columns"] = run.options["key_columns"]
        body["original_filename"] = os.path.basename(upload.name)
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def _act(self, fn, request: Request, pk: str) -> Response:  # noqa: ANN001
        run = selectors.import_run_get(user=request.user, pk=pk)
        try:
            result = fn(run=run, user=request.user)
        except services.ImportRefused as exc:
            raise _refused(exc) from exc
        return Response(ImportRunSerializer(result).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ImportRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        return self._act(services.import_run_cancel, request, pk)

    @extend_schema(request=None, responses={202: ImportRunSerializer})
    @action(detail=True, methods=["post"])
    def commit(self, request: Request, pk: str) -> Response:
        return self._act(services.import_run_commit_preview, request, pk)

    @extend_schema(request=None, responses={202: ImportRunSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str) -> Response:
        return self._act(services.import_run_request_rollback, request, pk)
