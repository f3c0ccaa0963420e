//! Signing in to Entra: the app certificate, signed assertions, tokens, the
//! ID token of a sign-in, and Entra's error codes in plain words.

pub mod aadsts;
pub mod assertion;
pub mod certificate;
pub mod id_token;
pub mod oauth;
pub mod token;

pub use assertion::AssertionAlg;
pub use certificate::{AppCertificate, KeyBits, StoredCertificate};
pub use token::{AccessToken, AuthError, Credential, TokenProvider};
