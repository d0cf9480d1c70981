//! TLS client configurations: verified against the system's roots (the default), or
//! accepting any certificate for a side whose admin opted in (self-signed test servers,
//! appliances with their own CA). The crypto provider is passed explicitly rather than
//! installed process-wide, so this works whichever providers the rest of the binary links.
//! Also the transport a connection reads and writes: plain TCP or TLS over TCP.

use std::{
    io,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, aws_lc_rs},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{ErrorKind, NativeError as Error, conn::Endpoint};

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(aws_lc_rs::default_provider()))
        .clone()
}

/// The shared configuration for one verification mode (built once: loading the system's
/// roots reads hundreds of files).
pub fn client_config(accept_invalid_certs: bool) -> Result<Arc<ClientConfig>, String> {
    static VERIFIED: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static ANY: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let slot = if accept_invalid_certs {
        &ANY
    } else {
        &VERIFIED
    };
    slot.get_or_init(|| build(accept_invalid_certs)).clone()
}

fn build(accept_invalid_certs: bool) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let config = if accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(
                "no trusted root certificates were found on this system (install the \
                 ca-certificates package), so no server certificate can be verified"
                    .into(),
            );
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts any certificate, but still checks that the handshake is signed by the key in
/// it: an opt-in for self-signed servers, not a way to switch TLS off.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A sentence about a failed handshake, from the error tokio-rustls returned.
pub fn describe_error(e: &std::io::Error) -> (String, bool) {
    use rustls::{CertificateError, Error};
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
    match inner {
        Some(Error::InvalidCertificate(cert)) => {
            let why = match cert {
                CertificateError::UnknownIssuer => {
                    "it is not signed by a trusted authority (self-signed?)".to_owned()
                }
                // What `openssl req -x509` makes by default: a self-signed CA certificate.
                CertificateError::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => {
                    "it is not signed by a trusted authority (self-signed CA certificate)"
                        .to_owned()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "it is not valid for this host name".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "it has expired".to_owned()
                }
                other => format!("{other:?}"),
            };
            (format!("the server's certificate was refused: {why}"), true)
        }
        Some(Error::InvalidMessage(_) | Error::PeerSentOversizedRecord) => (
            "the server did not answer with TLS (this port probably expects plain IMAP or \
             STARTTLS, not implicit TLS)"
                .to_owned(),
            false,
        ),
        Some(other) => (format!("TLS error: {other}"), false),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => (
            "the server closed the connection during the TLS handshake".to_owned(),
            false,
        ),
        None => (format!("TLS handshake failed: {e}"), false),
    }
}

pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Parked in a connection during the STARTTLS swap; any I/O on it fails.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection detached")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

pub(super) async fn handshake(
    ep: &Endpoint,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Error> {
    let side = ep.side;
    let config =
        client_config(ep.accept_invalid_certs).map_err(|e| Error::new(side, ErrorKind::Tls, e))?;
    let name = ServerName::try_from(ep.host.host.clone()).map_err(|_| {
        Error::new(
            side,
            ErrorKind::Tls,
            format!("{} is not a valid TLS server name", ep.host.host),
        )
    })?;
    let connect = TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(ep.connect_timeout, connect).await {
        Err(_) => Err(Error::new(
            side,
            ErrorKind::Tls,
            format!(
                "the TLS handshake did not complete within {:?} (does this port speak TLS?)",
                ep.connect_timeout
            ),
        )),
        Ok(Err(e)) => {
            let (detail, cert) = describe_error(&e);
            let kind = if cert {
                ErrorKind::TlsCert
            } else {
                ErrorKind::Tls
            };
            Err(Error::new(side, kind, detail))
        }
        Ok(Ok(s)) => Ok(s),
    }
}
