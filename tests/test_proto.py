"""The API contract in ``proto/govtrust/v1/`` and its generated stubs in ``govtrust/v1/``.

Checks that the committed stubs are exactly what ``make proto`` generates, that every service
has its RPCs, that the contract follows its conventions (UNSPECIFIED zero values, paging on
every list, buf-style names, timestamps as ``google.protobuf.Timestamp``), and that every
service, RPC, message, field, oneof, enum and enum value carries a comment.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor

REPO_ROOT = Path(__file__).resolve().parent.parent
GEN_SCRIPT = REPO_ROOT / "scripts" / "gen_proto.py"

SERVICE_MODULES = {
    "identity": "IdentityService",
    "certificate": "CertificateService",
    "seal": "SealService",
    "license": "LicenseService",
    "verify": "VerifyService",
}

EXPECTED_RPCS = {
    "IdentityService": {
        "RegisterCitizen", "RegisterLegalPerson", "RegisterStaff", "GetCitizen",
        "GetLegalPerson", "GetStaff", "SearchIdentities", "UpdateIdentityStatus",
        "CheckCitizen", "CheckLegalPerson", "GrantAgent", "RevokeAgent", "ListAgents",
        "RegisterClient", "ListClients", "RemoveClient", "IntrospectToken",
        "RegisterServiceIdentity", "GetServiceIdentity", "ListServiceIdentities",
        "UpdateServiceIdentityRoles", "DisableServiceIdentity", "EnableServiceIdentity",
    },
    "CertificateService": {
        "IssueCertificate", "GenerateKeyAndIssue", "RenewCertificate", "GetCertificate",
        "ListCertificates", "RevokeCertificate", "SuspendCertificate", "ResumeCertificate",
        "GetCaChain", "GetCrl", "IssueEncryptionPair", "RequestKeyRecovery",
        "ApproveKeyRecovery", "DeliverRecoveredKey",
    },
    "SealService": {
        "ApplySeal", "ReviewSeal", "MakeSeal", "FileSeal", "IssueSeal", "SuspendSeal",
        "ResumeSeal", "RevokeSeal", "DestroySeal", "RemakeSeal", "GrantSealUse",
        "RevokeSealUse", "ListSealGrants", "GetSeal", "ListSeals", "GetSealHistory",
        "GetSealImage", "SealPdf", "SignData", "SealOfd",
    },
    "LicenseService": {
        "DefineLicenseType", "GetLicenseType", "ListLicenseTypes", "IssueLicense", "IssueLicenses",
        "GetLicense", "ListLicenses", "AnnotateLicense", "RevokeLicense", "SuspendLicense",
        "ResumeLicense", "GrantLicenseAccess", "RevokeLicenseAccess", "GetLicenseDocument",
        "GetStatusList", "VerifyLicense",
    },
    "VerifyService": {
        "VerifyCertificate", "VerifyPdf", "VerifyPdfStream", "VerifyOfd", "VerifyLicense",
        "VerifySealSignature", "VerifyIdToken",
    },
}  # fmt: skip

# RPCs that return a list without a List/Search prefix; they are paged all the same.
PAGED_WITHOUT_PREFIX = {"GetSealHistory"}


def _load_gen_proto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", GEN_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_proto = _load_gen_proto()


def _stub_module(name: str) -> ModuleType:
    return importlib.import_module(f"govtrust.v1.{name}_pb2")


def _files() -> list[FileDescriptor]:
    """Descriptors of every contract file (the five services and common.proto)."""
    return [_stub_module(name).DESCRIPTOR for name in ["common", *SERVICE_MODULES]]


def _all_messages(descriptors: list[Descriptor]) -> Iterator[Descriptor]:
    for message in descriptors:
        if message.GetOptions().map_entry:
            continue
        yield message
        yield from _all_messages(list(message.nested_types))


def _all_enums() -> Iterator[EnumDescriptor]:
    for file in _files():
        yield from file.enum_types_by_name.values()
        for message in _all_messages(list(file.message_types_by_name.values())):
            yield from message.enum_types


def _is_list_rpc(name: str) -> bool:
    return name.startswith(("List", "Search")) or name in PAGED_WITHOUT_PREFIX


def _screaming(name: str) -> str:
    """``VerificationReport`` -> ``VERIFICATION_REPORT`` (buf's enum value prefix)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


# --- 1. committed stubs are up to date -------------------------------------------------------


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    fresh = {p.name: p for p in gen_proto.generate(tmp_path)}
    committed = {p.name: p for p in gen_proto.generated_files(REPO_ROOT)}
    hint = "the stubs in govtrust/v1/ are stale: run `make proto` and commit the result"
    assert sorted(committed) == sorted(fresh), f"{hint} (files differ)"
    stale = [
        name for name, path in fresh.items() if path.read_bytes() != committed[name].read_bytes()
    ]
    assert not stale, f"{hint} (changed: {', '.join(sorted(stale))})"
    init = REPO_ROOT / "govtrust" / "v1" / "__init__.py"
    assert init.read_text(encoding="utf-8") == gen_proto.INIT_DOCSTRING


# --- 2. services, RPCs and conventions -------------------------------------------------------


@pytest.mark.parametrize("module_name", sorted(SERVICE_MODULES))
def test_service_has_expected_rpcs(module_name: str) -> None:
    service_name = SERVICE_MODULES[module_name]
    module = _stub_module(module_name)
    grpc_module = importlib.import_module(f"govtrust.v1.{module_name}_pb2_grpc")
    service = module.DESCRIPTOR.services_by_name.get(service_name)
    assert service is not None, f"{service_name} missing from {module_name}.proto"
    assert service.full_name == f"govtrust.v1.{service_name}"
    missing = EXPECTED_RPCS[service_name] - set(service.methods_by_name)
    assert not missing, f"{service_name} lacks {sorted(missing)}"
    assert hasattr(grpc_module, f"{service_name}Stub")
    assert hasattr(grpc_module, f"{service_name}Servicer")
    assert hasattr(grpc_module, f"add_{service_name}Servicer_to_server")


def test_verify_pdf_has_client_streaming_variant() -> None:
    service = _stub_module("verify").DESCRIPTOR.services_by_name["VerifyService"]
    unary, streamed = (
        service.methods_by_name["VerifyPdf"],
        service.methods_by_name["VerifyPdfStream"],
    )
    assert not unary.client_streaming and not unary.server_streaming
    assert streamed.client_streaming and not streamed.server_streaming
    ofd = service.methods_by_name["VerifyOfd"]
    assert ofd.client_streaming and not ofd.server_streaming


def test_files_are_proto3_in_package_govtrust_v1() -> None:
    for file in _files():
        assert file.package == "govtrust.v1", file.name
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        assert proto.syntax == "proto3", file.name


def test_every_enum_starts_with_unspecified_zero() -> None:
    for enum in _all_enums():
        first = enum.values[0]
        prefix = _screaming(enum.name)
        assert first.number == 0, enum.full_name
        assert first.name == f"{prefix}_UNSPECIFIED", f"{enum.full_name}: {first.name}"
        wrong = [v.name for v in enum.values if not v.name.startswith(f"{prefix}_")]
        assert not wrong, f"{enum.full_name}: values without prefix {prefix}_: {wrong}"


def test_rpc_messages_follow_buf_naming_and_are_unique() -> None:
    seen: dict[str, str] = {}
    for module_name, service_name in SERVICE_MODULES.items():
        service = _stub_module(module_name).DESCRIPTOR.services_by_name[service_name]
        for method in service.methods:
            for message, suffix in (
                (method.input_type, "Request"),
                (method.output_type, "Response"),
            ):
                allowed = {f"{method.name}{suffix}", f"{service_name}{method.name}{suffix}"}
                assert message.name in allowed, f"{service_name}.{method.name}: {message.name}"
                assert message.file.package == "govtrust.v1"
                owner = f"{service_name}.{method.name}"
                assert seen.setdefault(message.full_name, owner) == owner, (
                    f"{message.full_name} used by {seen[message.full_name]} and {owner}"
                )


def test_every_list_rpc_is_paged() -> None:
    list_rpcs = 0
    for module_name, service_name in SERVICE_MODULES.items():
        service = _stub_module(module_name).DESCRIPTOR.services_by_name[service_name]
        for method in service.methods:
            if not _is_list_rpc(method.name):
                continue
            list_rpcs += 1
            request, response = method.input_type.fields_by_name, method.output_type.fields_by_name
            where = f"{service_name}.{method.name}"
            assert "page_size" in request, f"{where}: request lacks page_size"
            assert request["page_size"].type == request["page_size"].TYPE_INT32, where
            assert "page_token" in request, f"{where}: request lacks page_token"
            assert request["page_token"].type == request["page_token"].TYPE_STRING, where
            assert "next_page_token" in response, f"{where}: response lacks next_page_token"
            assert response["next_page_token"].type == response["next_page_token"].TYPE_STRING
    assert list_rpcs >= 9


def test_instants_are_timestamps() -> None:
    instant = re.compile(r"(_at|_time|_date|_before|_after|_from|_until|_update)$")
    allowed_strings = {  # calendar dates (not instants) are `YYYY-MM-DD` strings by convention
        "birth_date", "issue_date", "valid_from", "valid_until", "zzbfrq", "zzyxqqsrq", "zzyxqjzrq",
    }  # fmt: skip
    for file in _files():
        for message in _all_messages(list(file.message_types_by_name.values())):
            for field in message.fields:
                if not instant.search(field.name) or field.type in (
                    field.TYPE_MESSAGE,
                    field.TYPE_ENUM,
                ):
                    continue
                where = f"{message.full_name}.{field.name}"
                assert field.type == field.TYPE_STRING and field.name in allowed_strings, (
                    f"{where} looks like an instant: make it a google.protobuf.Timestamp"
                )


def test_messages_round_trip() -> None:
    common = _stub_module("common")
    verify = _stub_module("verify")
    report = common.VerificationReport(
        verdict=common.VERDICT_INDETERMINATE,
        reasons=[common.Reason(code=common.REASON_CODE_REVOCATION_UNKNOWN, message="no OCSP")],
        signatures=[common.SignatureReport(index=0, format=common.SIGNATURE_FORMAT_PADES)],
    )
    response = verify.VerifyPdfResponse(report=report)
    parsed = verify.VerifyPdfResponse.FromString(response.SerializeToString())
    assert parsed == response
    assert parsed.report.signatures[0].format == common.SIGNATURE_FORMAT_PADES


# --- 3. comments everywhere ------------------------------------------------------------------


def _descriptor_set(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "contract.binpb"
    args = [
        "grpc_tools.protoc",
        f"-I{gen_proto.PROTO_ROOT}",
        f"-I{gen_proto.well_known_include()}",
        "--include_source_info",
        f"--descriptor_set_out={out}",
        *(str(gen_proto.PROTO_ROOT / p) for p in gen_proto.proto_files()),
    ]
    assert gen_proto.protoc.main(args) == 0, "protoc failed on the contract"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


# Field numbers inside descriptor.proto used to build SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


def _uncommented(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    locations = {tuple(loc.path): loc for loc in file.source_code_info.location}
    missing: list[str] = []

    def check(path: tuple[int, ...], what: str, trailing_ok: bool = False) -> None:
        loc = locations.get(path)
        text = loc.leading_comments.strip() if loc else ""
        if not text and trailing_ok and loc is not None:
            text = loc.trailing_comments.strip()
        if not text:
            missing.append(f"{file.name}: {what}")

    def check_enum(
        path: tuple[int, ...], enum: descriptor_pb2.EnumDescriptorProto, scope: str
    ) -> None:
        check(path, f"enum {scope}{enum.name}")
        for i, value in enumerate(enum.value):
            check((*path, _ENUM_VALUE, i), f"enum value {scope}{enum.name}.{value.name}", True)

    def check_message(
        path: tuple[int, ...], message: descriptor_pb2.DescriptorProto, scope: str
    ) -> None:
        name = f"{scope}{message.name}"
        if message.options.map_entry:
            return
        check(path, f"message {name}")
        for i, field in enumerate(message.field):
            check((*path, _MESSAGE_FIELD, i), f"field {name}.{field.name}")
        for i, oneof in enumerate(message.oneof_decl):
            check((*path, _MESSAGE_ONEOF, i), f"oneof {name}.{oneof.name}")
        for i, nested in enumerate(message.nested_type):
            check_message((*path, _MESSAGE_NESTED, i), nested, f"{name}.")
        for i, enum in enumerate(message.enum_type):
            check_enum((*path, _MESSAGE_ENUM, i), enum, f"{name}.")

    for i, service in enumerate(file.service):
        check((_FILE_SERVICE, i), f"service {service.name}")
        for j, method in enumerate(service.method):
            check((_FILE_SERVICE, i, _SERVICE_METHOD, j), f"rpc {service.name}.{method.name}")
    for i, message in enumerate(file.message_type):
        check_message((_FILE_MESSAGE, i), message, "")
    for i, enum in enumerate(file.enum_type):
        check_enum((_FILE_ENUM, i), enum, "")
    return missing


def test_everything_in_the_contract_is_commented(tmp_path: Path) -> None:
    files = [f for f in _descriptor_set(tmp_path).file if f.name.startswith("govtrust/v1/")]
    assert sorted(f.name for f in files) == sorted(
        f"govtrust/v1/{name}.proto" for name in ["common", *SERVICE_MODULES]
    )
    missing = [entry for file in files for entry in _uncommented(file)]
    assert not missing, "elements without a leading comment:\n" + "\n".join(missing)
