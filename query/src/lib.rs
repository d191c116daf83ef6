//! strata-query
