//! The certificate listing's filter as SQL, written once for both engines: the conditions,
//! the order and the limit of [`CertFilter`], with the placeholders and the text match of
//! each engine's dialect. Each engine puts its own `SELECT … FROM …` in front and binds the
//! parameters its own way.

use super::CertFilter;

/// How an engine writes what differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    /// `?1`; `subject LIKE ?1 ESCAPE '\'` (SQLite's LIKE ignores ASCII case already).
    Sqlite,
    /// `$1`; `lower(subject) LIKE lower($1)` (backslash is PostgreSQL's default escape).
    Postgres,
}

/// A parameter of the listing, bound by each engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Param {
    /// A text value.
    Text(String),
    /// A number (Unix seconds).
    Int(i64),
}

/// Escape `%`, `_` and `\` for LIKE with backslash as its escape character (SQLite's `ESCAPE
/// '\'`; PostgreSQL's default).
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// ` AND …` conditions, then ` ORDER BY …` and ` LIMIT …`, for `f` at time `at`, and their
/// parameters in placeholder order.
pub(super) fn listing(f: &CertFilter, at: i64, dialect: Dialect) -> (String, Vec<Param>) {
    let mut sql = String::new();
    let mut params = Vec::new();
    let mut and = |sql: &mut String, clause: &str, p: Param| {
        params.push(p);
        let n = params.len();
        let ph = match dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        };
        sql.push_str(&clause.replace('#', &ph));
    };
    if let Some(p) = &f.profile {
        and(&mut sql, " AND profile = #", Param::Text(p.clone()));
    }
    if let Some(s) = f.status {
        and(&mut sql, " AND status = #", Param::Text(s.as_str().into()));
    }
    if let Some(w) = f.expiring_within_secs {
        and(
            &mut sql,
            " AND status = 'valid' AND not_after >= #",
            Param::Int(at),
        );
        and(
            &mut sql,
            " AND not_after < #",
            Param::Int(at.saturating_add(w)),
        );
    }
    if let Some(s) = &f.subject_contains {
        // The text as typed: `%` and `_` match themselves.
        let clause = match dialect {
            Dialect::Sqlite => " AND subject LIKE # ESCAPE '\\'",
            Dialect::Postgres => " AND lower(subject) LIKE lower(#)",
        };
        and(
            &mut sql,
            clause,
            Param::Text(format!("%{}%", like_escape(s))),
        );
    }
    if let Some(d) = &f.device_id {
        and(&mut sql, " AND device_id = #", Param::Text(d.clone()));
    }
    if let Some(i) = &f.issuer {
        and(&mut sql, " AND issuer = #", Param::Text(i.clone()));
    }
    if let Some((from, to)) = f.not_after_in {
        and(&mut sql, " AND not_after >= #", Param::Int(from));
        and(&mut sql, " AND not_after < #", Param::Int(to));
    }
    // Expiring: soonest first, read in the (status, notAfter) index's order, so a limit
    // stops the read early.
    sql.push_str(if f.expiring_within_secs.is_some() {
        " ORDER BY not_after, serial"
    } else {
        " ORDER BY created_at DESC, serial"
    });
    if f.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", f.limit));
    }
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CertStatus;

    #[test]
    fn both_dialects_number_the_same_parameters_in_the_same_order() {
        let f = CertFilter {
            profile: Some("wifi".into()),
            status: Some(CertStatus::Valid),
            subject_contains: Some("50%_off\\".into()),
            device_id: Some("mdm:1".into()),
            limit: 10,
            ..Default::default()
        };
        let (lite, p1) = listing(&f, 100, Dialect::Sqlite);
        let (pg, p2) = listing(&f, 100, Dialect::Postgres);
        assert_eq!(p1, p2);
        assert_eq!(
            lite,
            " AND profile = ?1 AND status = ?2 AND subject LIKE ?3 ESCAPE '\\' \
             AND device_id = ?4 ORDER BY created_at DESC, serial LIMIT 10"
        );
        assert_eq!(
            pg,
            " AND profile = $1 AND status = $2 AND lower(subject) LIKE lower($3) \
             AND device_id = $4 ORDER BY created_at DESC, serial LIMIT 10"
        );
        assert_eq!(p1[2], Param::Text("%50\\%\\_off\\\\%".into()));
    }

    #[test]
    fn expiring_reads_soonest_first_from_now() {
        let f = CertFilter {
            expiring_within_secs: Some(60),
            ..Default::default()
        };
        let (sql, p) = listing(&f, 1000, Dialect::Sqlite);
        assert_eq!(
            sql,
            " AND status = 'valid' AND not_after >= ?1 AND not_after < ?2 \
             ORDER BY not_after, serial"
        );
        assert_eq!(p, vec![Param::Int(1000), Param::Int(1060)]);
    }
}
