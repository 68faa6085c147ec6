//! Problems found while loading a config, each with its place in the file.

use std::fmt;

/// One problem: where it is (file, key path, line and column when known) and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file path, `<embedded>` for text without a file, or the name of
    /// the environment variable an override came from.
    pub origin: String,
    /// Key path such as `models[1].routes[0].provider`; empty when the
    /// problem is not about one key (unreadable file, YAML syntax, a bad
    /// `${VAR}` reference).
    pub path: String,
    /// 1-based line in the file as written (before `${VAR}` interpolation).
    pub line: Option<usize>,
    /// 1-based column, counted in characters.
    pub column: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(
        origin: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            origin: origin.into(),
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, pos: Option<(usize, usize)>) -> Self {
        if let Some((line, column)) = pos {
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }
}

/// `config.yaml:12:7: models[1].routes[0].provider: unknown provider ...`
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found, in file order where positions are known. Never empty
/// when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_lines(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

fn render_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    pub fn new(errors: Vec<ConfigError>) -> Self {
        ConfigErrors { errors }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// Problems with a known line first, by position; the rest keep the
    /// order they were found in.
    pub(crate) fn sort_by_position(&mut self) {
        self.errors
            .sort_by_key(|e| (e.line.is_none(), e.line, e.column));
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors { errors: vec![e] }
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_position() {
        let e = ConfigError::new(
            "config.yaml",
            "models[1].routes[0].provider",
            "unknown provider `opena`",
        );
        assert_eq!(
            e.to_string(),
            "config.yaml: models[1].routes[0].provider: unknown provider `opena`"
        );
        let e = e.at(Some((12, 7)));
        assert_eq!(
            e.to_string(),
            "config.yaml:12:7: models[1].routes[0].provider: unknown provider `opena`"
        );
        let e = ConfigError::new("config.yaml", "", "cannot read file");
        assert_eq!(e.to_string(), "config.yaml: cannot read file");
    }

    #[test]
    fn errors_render_one_per_line() {
        let errs = ConfigErrors::new(vec![
            ConfigError::new("a.yaml", "x", "one"),
            ConfigError::new("a.yaml", "y", "two"),
        ]);
        assert_eq!(errs.to_string(), "a.yaml: x: one\na.yaml: y: two");
    }
}
