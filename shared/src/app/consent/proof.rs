//! The consent's second leg: the OpenID Connect sign-in that proves the
//! administrator belongs to the tenant whose grant was confirmed.

use super::*;

impl Callback<'_> {
    /// The grant alone does not show who asked for it: any account can name
    /// a tenant that consented once and is held by no account. Before the
    /// tenant is claimed, an administrator must sign in there (OpenID
    /// Connect), and Entra says which tenant they belong to. Remembers that
    /// the proof is awaited and sends the browser to the sign-in, with the
    /// same state and redirect URI.
    pub(super) async fn ask_for_proof(
        &self,
        cloud: &Cloud,
        proof: AwaitedProof,
    ) -> Result<Ending, Ending> {
        let (app, redirect) = sign_in_client(self.app, self.graph).map_err(Ending::Failed)?;
        let tenant = proof.tenant;
        let url = sign_in_url(
            cloud,
            (tenant, app.client_id),
            &redirect,
            &self.key,
            &proof.nonce,
        )?;
        let state = ConsentState {
            granted_at: Some(self.granted_at),
            proof: Some(proof),
            ..self.state.clone()
        };
        // Time to sign in, counted from the grant: a replayed first leg
        // cannot keep the state alive.
        let expires = self.granted_at
            + chrono::Duration::minutes(PROPAGATION_MINUTES + CONSENT_STATE_MINUTES);
        match self
            .app
            .store
            .replace_ephemeral("consent", &self.key, &json!(state), expires)
            .await
        {
            Ok(true) => Ok(Ending::SignIn { url, tenant }),
            Ok(false) => Err(Ending::Refused(STATE_USED.into())),
            Err(e) => Err(store_down(e)),
        }
    }

    /// The return of the sign-in: the connector is checked again (it may
    /// have changed meanwhile), the code is redeemed for an ID token that
    /// must show a member of the tenant whose grant was confirmed, and only
    /// then is the grant committed.
    pub(super) async fn proven(&self) -> Result<Ending, Ending> {
        let proof = self
            .state
            .proof
            .clone()
            .ok_or_else(|| Ending::Refused(NO_PROOF_AWAITED.into()))?;
        let connector = self.connector().await?;
        let binding = Binding::of(&connector, self.state.migrate)?;
        binding.check(proof.tenant)?;
        if binding.named != proof.named {
            return Err(Ending::Refused(format!(
                "Connector {} was pointed at another tenant ({}) since this consent was started.",
                connector.id, binding.named
            )));
        }
        let held = self.check_claim(proof.tenant).await?;
        self.prove(&binding.cloud, &proof).await?;
        self.commit(connector, proof.tenant, &proof.name, held)
            .await
    }

    /// Redeems the sign-in's code as the platform app and checks the ID
    /// token Entra answered with.
    pub(super) async fn prove(&self, cloud: &Cloud, proof: &AwaitedProof) -> Result<(), Ending> {
        let tenant = proof.tenant;
        let code = self
            .params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Ending::Refused("The sign-in response carries no code.".into()))?;
        let (app, redirect) = sign_in_client(self.app, self.graph).map_err(Ending::Failed)?;
        let id_token = self
            .graph
            .tokens
            .redeem_code(
                (cloud.authority_url(), &tenant.to_string()),
                &app.credential(),
                code,
                &redirect,
            )
            .await
            .map_err(code_refused)?;
        let expected = Expected {
            authority: cloud.authority_url(),
            tenant,
            client_id: app.client_id,
            now: self.app.store.now(),
            nonce: &proof.nonce,
        };
        id_token::claims(&id_token)
            .and_then(|claims| claims.check(&expected))
            .map_err(|e| Ending::Refused(not_proven(&e, tenant)))
    }
}

/// Why an ID token does not prove the sign-in, for the page and the audit.
pub(super) fn not_proven(e: &IdTokenError, tenant: Uuid) -> String {
    match e {
        IdTokenError::OtherTenant(other) => format!(
            "The administrator who signed in belongs to another tenant ({other}), not to tenant {tenant} whose grant \
             this consent would connect: only an administrator of that tenant can connect it."
        ),
        IdTokenError::NotAdministrator => format!(
            "The user who signed in is not a Global Administrator or Privileged Role Administrator of tenant \
             {tenant}: only someone who can grant the consent can connect the tenant. Sign in as one."
        ),
        IdTokenError::Guest(_) => format!(
            "The administrator who signed in is a guest of tenant {tenant}, not one of its own users: only an \
             administrator of that tenant can connect it."
        ),
        other => format!("The sign-in could not be confirmed: {other}."),
    }
}

/// A code redemption Entra refused, or that did not reach it.
pub(super) fn code_refused(e: AuthError) -> Ending {
    match &e {
        AuthError::Refused { code: Some(c), .. } if CODE_SPENT.contains(c) => {
            Ending::Rejected(e.to_string())
        }
        AuthError::Unreachable { .. } | AuthError::Secret(_) => Ending::Unavailable(e.to_string()),
        _ => Ending::Refused(format!("Entra did not confirm the sign-in: {e}")),
    }
}

/// The platform app and the callback's redirect URI: the client of both
/// the consent and the sign-in.
pub(super) fn sign_in_client<'a>(
    app: &App,
    graph: &'a GraphDeps,
) -> Result<(&'a EntraApp, String), String> {
    let platform = graph
        .app
        .as_ref()
        .ok_or("the platform app is not configured (DIRSYNC_APP_CLIENT_ID)")?;
    let redirect = app
        .settings
        .consent_redirect_uri
        .clone()
        .ok_or("DIRSYNC_CONSENT_REDIRECT_URI is not set")?;
    Ok((platform, redirect))
}

/// The OpenID Connect sign-in in `tenant`: an authorization code sent back
/// to the callback with the consent's state. `select_account` lets the
/// administrator pick the account of that tenant rather than whichever
/// account the browser is signed in with.
pub(super) fn sign_in_url(
    cloud: &Cloud,
    (tenant, client_id): (Uuid, Uuid),
    redirect: &str,
    state: &str,
    nonce: &str,
) -> Result<String, Ending> {
    url::Url::parse_with_params(
        &format!("{}/{tenant}/oauth2/v2.0/authorize", cloud.authority_url()),
        &[
            ("client_id", client_id.to_string().as_str()),
            ("response_type", "code"),
            ("response_mode", "query"),
            ("redirect_uri", redirect),
            ("scope", "openid"),
            ("state", state),
            ("nonce", nonce),
            ("prompt", "select_account"),
        ],
    )
    .map(String::from)
    .map_err(|e| Ending::Failed(format!("The sign-in address could not be built: {e}")))
}
