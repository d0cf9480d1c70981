//! Logging in: AUTHENTICATE PLAIN (with SASL-IR when offered) or LOGIN. The password is
//! written to the socket only: quoted, as a literal when it cannot be quoted (8-bit, CR/LF),
//! or base64 in SASL; it never reaches an error or a log line.

use super::{
    ErrorKind, NativeError as Error,
    conn::{Arg, AuthMethod, Conn, Endpoint},
    utf7,
    wire::{Resp, Status},
};

impl Conn {
    pub(super) async fn login(&mut self, ep: &Endpoint) -> Result<(), Error> {
        let method = match ep.auth {
            AuthMethod::Auto if self.has("AUTH=PLAIN") => AuthMethod::Plain,
            AuthMethod::Auto => AuthMethod::Login,
            m => m,
        };
        let (user, pass) = (ep.user.as_bytes(), ep.password.expose().as_bytes());
        let done = match method {
            AuthMethod::Plain => {
                let mut sasl = Vec::with_capacity(user.len() + pass.len() + 2);
                sasl.push(0);
                sasl.extend_from_slice(user);
                sasl.push(0);
                sasl.extend_from_slice(pass);
                let b64 = utf7::base64_standard(&sasl);
                if self.has("SASL-IR") {
                    self.run(&[Arg::Raw(b"AUTHENTICATE PLAIN "), Arg::Raw(b64.as_bytes())])
                        .await?
                } else {
                    let tag = self.send(&[Arg::Raw(b"AUTHENTICATE PLAIN")]).await?;
                    self.flush().await?;
                    loop {
                        match self.next_response().await? {
                            Resp::Continue(_) => break,
                            Resp::Status {
                                tag: Some(t), text, ..
                            } if t == tag => {
                                return Err(self.err(ErrorKind::Auth, text));
                            }
                            _ => {}
                        }
                    }
                    self.write(b64.as_bytes()).await?;
                    self.write(b"\r\n").await?;
                    self.finish(&tag).await?
                }
            }
            _ => {
                if self.has("LOGINDISABLED") {
                    return Err(self.err(
                        ErrorKind::Auth,
                        "the server refuses LOGIN on this connection (LOGINDISABLED): use TLS"
                            .into(),
                    ));
                }
                self.run(&[
                    Arg::Raw(b"LOGIN "),
                    Arg::Str(user),
                    Arg::Raw(b" "),
                    Arg::Str(pass),
                ])
                .await?
            }
        };
        if done.status != Status::Ok {
            let text = if done.text.is_empty() {
                "authentication failed".into()
            } else {
                done.text
            };
            return Err(self.err(ErrorKind::Auth, text));
        }
        match done
            .code
            .as_deref()
            .and_then(|c| c.strip_prefix("CAPABILITY "))
        {
            Some(_) => self.set_caps_from(done.code.as_deref()),
            None => self.refresh_caps().await?,
        }
        Ok(())
    }
}
