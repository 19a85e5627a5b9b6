//! Pure policy rules shared by the controllers and (later) the admission webhook:
//! one implementation, two callers.

pub mod budget;
