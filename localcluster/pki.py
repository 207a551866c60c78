"""The certificates and keys of a throwaway control plane on loopback.

One CA signs the API server's serving certificate and the client certificates
of the admin and of kube-controller-manager; a separate key pair signs
service-account tokens. Keys are ECDSA P-256: quick to generate, accepted
everywhere the control plane needs a key.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)

# The first address of the service range (--service-cluster-ip-range) is the
# `kubernetes` Service, which the serving certificate must name too.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"


@dataclass(frozen=True, kw_only=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True)
class Pki:
    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    controller_manager: CertPair
    kubelet_client: CertPair
    service_account_key: Path
    service_account_public_key: Path


def create_pki(directory: Path) -> Pki:
    """Write a fresh CA, certificates and service-account keys into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kubetasks-test-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca = _write(directory, "ca", ca_cert, ca_key)

    def issue(
        stem: str, subject: x509.Name, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
    ) -> CertPair:
        return _sign_leaf(directory, stem, subject, issuer=ca_name, ca_key=ca_key, usages=[usage], san=san)

    apiserver = issue(
        "apiserver",
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
        ],
    )
    # Membership of system:masters is what makes the admin an admin under RBAC.
    admin = issue("admin", _name("kubetasks-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, [])
    # RBAC's bootstrap policy binds this user name to the controller manager's role.
    controller_manager = issue(
        "controller-manager", _name("system:kube-controller-manager"), ExtendedKeyUsageOID.CLIENT_AUTH, []
    )

    # The API server's identity towards kubelets (logs, exec), which authorise it by its group.
    kubelet_client = issue(
        "apiserver-kubelet-client", _name("kube-apiserver-kubelet-client", "system:masters"),
        ExtendedKeyUsageOID.CLIENT_AUTH, [],
    )

    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    sa_key_path.write_bytes(_private_bytes(sa_key))
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(
        ca=ca,
        apiserver=apiserver,
        admin=admin,
        controller_manager=controller_manager,
        kubelet_client=kubelet_client,
        service_account_key=sa_key_path,
        service_account_public_key=sa_pub_path,
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _private_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPair:
    pair = CertPair(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_private_bytes(key))
    pair.key.chmod(0o600)
    return pair


def create_serving_cert(directory: Path, *, common_name: str, ip: str) -> CertPair:
    """A self-signed serving certificate for ``ip`` (the API server does not verify kubelets here)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return _write(directory, common_name, cert, key)


def issue_from_ca(
    ca: CertPair,
    directory: Path,
    stem: str,
    *,
    common_name: str,
    organization: str | None = None,
    client: bool = False,
    server_ips: tuple[str, ...] = (),
) -> CertPair:
    """A certificate signed by the CA of ``create_pki``: a client identity, a server, or both.

    A kubelet, for one, is a client of the API server as ``system:node:<name>`` in
    ``system:nodes``, and serves its own API at the node's address.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca.key} is not an ECDSA key")
    usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
        [ExtendedKeyUsageOID.SERVER_AUTH] if server_ips else []
    )
    san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
    return _sign_leaf(directory, stem, _name(common_name, organization), issuer=ca_cert.subject,
                      ca_key=ca_key, usages=usages, san=san)


def _sign_leaf(
    directory: Path, stem: str, subject: x509.Name, *, issuer: x509.Name,
    ca_key: ec.EllipticCurvePrivateKey, usages: list[x509.ObjectIdentifier], san: list[x509.GeneralName],
) -> CertPair:
    """A new key and its certificate for ``subject``, signed by the CA, written as ``stem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(subject, issuer, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return _write(directory, stem, builder.sign(ca_key, hashes.SHA256()), key)
