//! The user's settings file, `config.toml` in `$XDG_CONFIG_HOME/mtorrent/` (or
//! `~/.config/mtorrent/`): the trackers that new `.mtorrent` files name, so that `share` and
//! `create` need no `--tracker` on every call, and the certificate and key with which the
//! peer accepts other peers over TLS (as `--tls-cert` and `--tls-key`, which take precedence).
//!
//! ```toml
//! trackers = ["wss://tracker1.example:7001/ws", "wss://tracker2.example:7002/ws"]
//! tls_cert = "/etc/mtorrent/peer.pem"
//! tls_key = "/etc/mtorrent/peer.key"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the settings file may say; anything else in it is an error.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The two trackers new `.mtorrent` files name, tracker 1 first.
    pub trackers: Option<Vec<String>>,
    /// The certificate chain (PEM) with which the peer accepts peers over TLS; needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`; needs `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// Why the settings file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML, or has fields of the wrong kind or unknown ones.
    #[error("{path} is not a valid mtorrent config: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        source: Box<toml::de::Error>,
    },
}

impl Config {
    /// The settings file's standard place: `$XDG_CONFIG_HOME/mtorrent/config.toml`, or
    /// `~/.config/mtorrent/config.toml`; `None` without either variable.
    pub fn default_path() -> Option<PathBuf> {
        let dir = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(dir.join("mtorrent").join("config.toml"))
    }

    /// Reads the settings at `path`; a file that does not exist is no settings at all.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses settings from TOML text.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The TLS certificate and key paths, if both are set; an error naming the missing one if
    /// only one is.
    pub fn tls_paths(&self) -> Result<Option<(PathBuf, PathBuf)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            (Some(_), None) => Err("tls_cert is set but tls_key is not".to_owned()),
            (None, Some(_)) => Err("tls_key is set but tls_cert is not".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trackers_and_refuses_anything_unknown() {
        let config = Config::parse("trackers = [\"ws://a:1/ws\", \"ws://b:2/ws\"]\n").unwrap();
        assert_eq!(
            config.trackers,
            Some(vec!["ws://a:1/ws".to_owned(), "ws://b:2/ws".to_owned()])
        );
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert!(
            Config::parse("tracker = [\"ws://a/ws\"]").is_err(),
            "a typo"
        );
        assert!(
            Config::parse("trackers = \"ws://a/ws\"").is_err(),
            "not a list"
        );
        assert!(Config::parse("trackers = [").is_err(), "not TOML");
    }

    #[test]
    fn reads_tls_paths_both_or_neither() {
        let config = Config::parse("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n").unwrap();
        assert_eq!(
            config.tls_paths().unwrap(),
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        assert_eq!(Config::default().tls_paths().unwrap(), None);
        let error = Config::parse("tls_cert = \"/c.pem\"")
            .unwrap()
            .tls_paths()
            .unwrap_err();
        assert!(error.contains("tls_key"), "{error}");
        let error = Config::parse("tls_key = \"/k.pem\"")
            .unwrap()
            .tls_paths()
            .unwrap_err();
        assert!(error.contains("tls_cert"), "{error}");
        assert!(
            Config::parse("tls_certificate = \"/c.pem\"").is_err(),
            "a typo"
        );
    }

    #[test]
    fn a_missing_file_is_no_settings_and_a_bad_one_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        std::fs::write(&path, "trackers = 3").unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("config.toml"), "{error}");
    }
}
