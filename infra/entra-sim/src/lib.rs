//! The Entra ID / Microsoft Graph simulator (being built).
