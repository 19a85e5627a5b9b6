//! The admission webhook and auth API, served over HTTPS.
