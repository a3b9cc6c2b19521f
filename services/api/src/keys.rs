//! Key material of os-keypairs: validation and fingerprints of imported public keys,
//! and generation of key pairs, as Nova's `nova/crypto.py` does them.
//!
//! Invariants:
//! - An ssh public key is accepted only when `ssh-key` parses it as an OpenSSH public
//!   key (`<type> <base64 blob> [comment]`); its fingerprint is Nova's: the MD5 of the
//!   decoded blob in colon-separated lower-case hex.
//! - An x509 key is accepted only when it is a PEM certificate that parses as X.509; its
//!   fingerprint is the SHA-1 of the DER certificate, colon hex.
//! - Generated private keys are returned to the caller only: nothing here logs them or
//!   keeps them.

use base64::Engine as _;
use domain::keypair::{KeyType, PublicKey};
use md5::Digest as _;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::ApiError;

/// Nova's RSA key size for generated key pairs.
const BITS: usize = 2048;

/// The comment Nova puts on the public keys it generates.
const COMMENT: &str = "Generated-by-Nova";

/// Nova's InvalidKeypair (400): `Keypair data is invalid: <reason>`.
pub fn invalid(reason: &str) -> ApiError {
    ApiError::bad_request(format!("Keypair data is invalid: {reason}"))
}

fn colon_hex(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Nova's `generate_fingerprint`: MD5 of the key blob of an OpenSSH public key.
pub fn ssh_fingerprint(public_key: &str) -> Result<String, ApiError> {
    let fail = || invalid("failed to generate fingerprint");
    let text = public_key.trim();
    ssh_key::PublicKey::from_openssh(text).map_err(|_| fail())?;
    let blob = text.split_whitespace().nth(1).ok_or_else(fail)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| fail())?;
    Ok(colon_hex(&md5::Md5::digest(&raw)))
}

/// Nova's `generate_x509_fingerprint`: SHA-1 of the DER of a PEM certificate.
pub fn x509_fingerprint(pem: &str) -> Result<String, ApiError> {
    let fail = |why: &str| {
        invalid(&format!(
            "failed to generate X509 fingerprint. Error message: {why}"
        ))
    };
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| fail(&format!("Unable to load PEM file: {e:?}")))?;
    webpki::EndEntityCert::try_from(&der)
        .map_err(|e| fail(&format!("Unable to load certificate: {e:?}")))?;
    Ok(colon_hex(&sha1::Sha1::digest(der.as_ref())))
}

/// Validates an imported public key of `key_type` and computes its fingerprint.
pub fn import(key_type: KeyType, public_key: String) -> Result<PublicKey, ApiError> {
    let fingerprint = match key_type {
        KeyType::Ssh => ssh_fingerprint(&public_key)?,
        KeyType::X509 => x509_fingerprint(&public_key)?,
    };
    Ok(PublicKey {
        key_type,
        public_key,
        fingerprint,
    })
}

/// A generated key pair: the public part to record and the private key to return once.
pub struct Generated {
    pub key: PublicKey,
    pub private_key: String,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("key", &self.key)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

fn failed(what: &str) -> ApiError {
    tracing::error!(what, "key generation failed");
    ApiError::internal(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// Generates a key pair of `key_type` for `user` (CPU-bound: call it off the runtime).
///
/// ssh: an RSA 2048 key; the private key in PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`, as
/// paramiko writes it), the public key `ssh-rsa <blob> Generated-by-Nova`.
/// x509: a self-signed client certificate for `CN=<user>` (RSA 2048, SHA-256, ten years,
/// extended key usage clientAuth, UPN `<user>@localhost`), as Nova's
/// `generate_winrm_x509_cert`; the private key is, as there, the base64 of a PKCS#12
/// bundle of the key and the certificate with an empty password ([`pkcs12`]).
pub fn generate(key_type: KeyType, user: &str) -> Result<Generated, ApiError> {
    let mut rng = rand_core::OsRng;
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, BITS).map_err(|_| failed("rsa"))?;
    match key_type {
        KeyType::Ssh => {
            let mpint = |b: &rsa::BigUint| ssh_key::Mpint::from_positive_bytes(&b.to_bytes_be());
            let data = ssh_key::public::KeyData::Rsa(ssh_key::public::RsaPublicKey {
                e: mpint(rsa_key.e()).map_err(|_| failed("e"))?,
                n: mpint(rsa_key.n()).map_err(|_| failed("n"))?,
            });
            let public_key = ssh_key::PublicKey::new(data, COMMENT)
                .to_openssh()
                .map_err(|_| failed("openssh"))?;
            let private_key = rsa_key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .map_err(|_| failed("pkcs1"))?
                .to_string();
            let fingerprint = ssh_fingerprint(&public_key)?;
            Ok(Generated {
                key: PublicKey {
                    key_type,
                    public_key,
                    fingerprint,
                },
                private_key,
            })
        }
        KeyType::X509 => {
            let der = rsa_key.to_pkcs8_der().map_err(|_| failed("pkcs8"))?;
            let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            let pair =
                rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
                    .map_err(|_| failed("rcgen key"))?;
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, user);
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            params.subject_alt_names = vec![rcgen::SanType::OtherName((
                vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                rcgen::OtherNameValue::Utf8String(format!("{user}@localhost")),
            ))];
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now;
            params.not_after = now + time::Duration::days(3650);
            let cert = params
                .self_signed(&pair)
                .map_err(|_| failed("rcgen cert"))?;
            let public_key = cert.pem();
            let private_key = pkcs12(der.as_bytes(), cert.der())?;
            let fingerprint = x509_fingerprint(&public_key)?;
            Ok(Generated {
                key: PublicKey {
                    key_type,
                    public_key,
                    fingerprint,
                },
                private_key,
            })
        }
    }
}

/// The base64 of a PKCS#12 bundle of a PKCS#8 key and its certificate, with the empty
/// password, as `openssl pkcs12 -export -password pass:` writes it for Nova (PBES2 with
/// AES-256 and an HMAC-SHA256 MAC); the key's local id is the certificate's SHA-1, as
/// OpenSSL sets it.
fn pkcs12(pkcs8_der: &[u8], cert_der: &[u8]) -> Result<String, ApiError> {
    let cert = p12_keystore::Certificate::from_der(cert_der).map_err(|_| failed("p12 cert"))?;
    let local_key_id = sha1::Sha1::digest(cert_der);
    let chain = p12_keystore::PrivateKeyChain::new(pkcs8_der, local_key_id, [cert]);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("1", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let bundle = store.writer("").write().map_err(|_| failed("p12"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public key and fingerprint of Nova's keypairs-import-post sample.
    const SAMPLE: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDx8nkQv/zgGgB4rMYmIf+6A4l6Rr+o/6lHBQdW5aYd44bd8JttDCE/F/pNRr0lRE+PiqSPO8nDPHw0010JeMH9gYgnnFlyY3/OcJ02RhIPyyxYpv9FhY+2YiUkpwFOcLImyrxEsYXpD/0d3ac30bNH6Sw9JD9UZHYcpSxsIbECHw== Generated-by-Nova";

    #[test]
    fn ssh_fingerprint_is_novas() {
        assert_eq!(
            ssh_fingerprint(SAMPLE).unwrap(),
            "1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c"
        );
        // A trailing newline (a key file's content) is the same key.
        assert_eq!(
            ssh_fingerprint(&format!("{SAMPLE}\n")).unwrap(),
            "1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c"
        );
    }

    #[test]
    fn invalid_keys_are_refused() {
        for bad in [
            "",
            "ssh-rsa",
            "ssh-rsa not-base64!",
            "bogus",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB",
        ] {
            let e = ssh_fingerprint(bad).unwrap_err();
            assert_eq!(
                e.message, "Keypair data is invalid: failed to generate fingerprint",
                "{bad:?}"
            );
        }
        let e = x509_fingerprint("not a certificate").unwrap_err();
        assert!(
            e.message
                .starts_with("Keypair data is invalid: failed to generate X509 fingerprint."),
            "{}",
            e.message
        );
    }

    #[test]
    fn generated_keys_are_valid_and_their_own() {
        let g = generate(KeyType::Ssh, "alice").unwrap();
        assert!(g.key.public_key.starts_with("ssh-rsa "));
        assert!(g.key.public_key.ends_with(" Generated-by-Nova"));
        assert!(g
            .private_key
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert_eq!(
            g.key.fingerprint,
            ssh_fingerprint(&g.key.public_key).unwrap()
        );
        assert!(!format!("{g:?}").contains("PRIVATE"));
        let x = generate(KeyType::X509, "alice").unwrap();
        assert!(x.key.public_key.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            x.key.fingerprint,
            x509_fingerprint(&x.key.public_key).unwrap()
        );
        assert_eq!(x.key.fingerprint.len(), 20 * 3 - 1);
        // The generated certificate imports as an x509 key.
        assert!(import(KeyType::X509, x.key.public_key.clone()).is_ok());
        // The private key is Nova's: base64 of a PKCS#12 bundle with an empty password,
        // holding the certificate and the key it certifies.
        let bundle = base64::engine::general_purpose::STANDARD
            .decode(&x.private_key)
            .unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(&bundle, "").unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        let cert = CertificateDer::from_pem_slice(x.key.public_key.as_bytes()).unwrap();
        assert_eq!(chain.chain().len(), 1);
        assert_eq!(chain.chain()[0].as_der(), cert.as_ref());
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
        let key = rsa::RsaPrivateKey::from_pkcs8_der(chain.key()).unwrap();
        let spki = key.to_public_key().to_public_key_der().unwrap();
        assert!(cert
            .as_ref()
            .windows(spki.as_bytes().len())
            .any(|w| w == spki.as_bytes()));
        assert!(p12_keystore::KeyStore::from_pkcs12(&bundle, "wrong").is_err());
    }
}
