//! Approval tokens: signed statements that an approver approved one request's exact spec.
