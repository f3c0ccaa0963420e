//! The callback: the two legs of a consent (the grant, then the sign-in
//! that proves the tenant), each check a named step over one request.

use super::*;

pub async fn callback(app: &App, graph: &GraphDeps, raw_query: &str) -> CallbackPage {
    let params = match parse_query(raw_query) {
        Ok(p) => p,
        Err(why) => return Ending::Refused(why).page(),
    };
    let (key, state) = match peek_state(app, &params).await {
        Ok(found) => found,
        Err(ending) => return ending.page(),
    };
    let call = Callback {
        app,
        graph,
        granted_at: state.granted_at.unwrap_or_else(|| app.store.now()),
        params,
        key,
        state,
    };
    let ending = match call.decide().await {
        Ok(ending) | Err(ending) => ending,
    };
    call.finish(ending).await
}

pub(super) fn parse_query(raw_query: &str) -> Result<HashMap<String, String>, String> {
    if raw_query.len() > MAX_QUERY {
        return Err("The response is longer than any Entra sends.".into());
    }
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("The parameter \"{k}\" appears more than once."));
        }
    }
    Ok(params)
}

/// The state the response carries, read but not spent: a grant Entra has
/// not confirmed yet leaves it usable for the page's next reload.
pub(super) async fn peek_state(
    app: &App,
    params: &HashMap<String, String>,
) -> Result<(String, ConsentState), Ending> {
    let key = params
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or_else(|| Ending::Refused("The response carries no state.".into()))?;
    match app.store.get_ephemeral("consent", key).await {
        Ok(Some(v)) => serde_json::from_value(v)
            .map(|state| (key.clone(), state))
            .map_err(|_| Ending::Refused("The consent state is unreadable.".into())),
        Ok(None) => Err(Ending::Refused(STATE_USED.into())),
        Err(e) => Err(store_down(e)),
    }
}

/// One callback request and the state it carries.
pub(super) struct Callback<'a> {
    pub(super) app: &'a App,
    pub(super) graph: &'a GraphDeps,
    pub(super) params: HashMap<String, String>,
    pub(super) key: String,
    pub(super) state: ConsentState,
    /// When the grant first reached us (now, on a first arrival).
    pub(super) granted_at: DateTime<Utc>,
}

/// The tenant a connector is bound to, read before anything is rewritten.
pub(super) struct Binding {
    pub(super) cloud: Cloud,
    /// As the connector names it: a domain or a GUID.
    pub(super) named: String,
    /// The tenant's id where it is known without signing in: a GUID named,
    /// or the tenant a granted connector is connected to.
    pub(super) id: Option<Uuid>,
    pub(super) kind: BindingKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BindingKind {
    /// A consent connector waiting for consent.
    Pending,
    /// A consent connector already granted: consent can renew its grant in
    /// the same tenant, never move it.
    Granted,
    /// A legacy connector to migrate, in its own tenant.
    Legacy,
}

impl Binding {
    pub(super) fn of(c: &Connector, migrate: bool) -> Result<Self, Ending> {
        match (&c.source, migrate) {
            (
                SourceConfig::EntraConsent {
                    cloud,
                    tenant,
                    consent,
                },
                false,
            ) => {
                let named = tenant.clone().ok_or_else(|| {
                    Ending::Refused(format!(
                        "Connector {} names no tenant. Name its tenant (POST …/tenant) and start the consent again.",
                        c.id
                    ))
                })?;
                let (id, kind) = match consent {
                    Consent::Granted { tenant_id, .. } => (Some(*tenant_id), BindingKind::Granted),
                    Consent::Pending => (Uuid::parse_str(&named).ok(), BindingKind::Pending),
                };
                Ok(Self {
                    cloud: cloud.clone(),
                    named,
                    id,
                    kind,
                })
            }
            (
                SourceConfig::EntraLegacy {
                    cloud,
                    tenant_domain,
                    ..
                },
                true,
            ) => Ok(Self {
                cloud: cloud.clone(),
                named: tenant_domain.to_string(),
                id: None,
                kind: BindingKind::Legacy,
            }),
            _ => Err(Ending::Refused(format!(
                "Connector {} has changed since this consent was started (its kind is now {}).",
                c.id,
                c.kind()
            ))),
        }
    }

    /// Refuses another tenant than the connector's, where its id is known.
    pub(super) fn check(&self, tenant: Uuid) -> Result<(), Ending> {
        match self.id {
            Some(id) if id != tenant => Err(Ending::Refused(self.wrong_tenant(tenant))),
            _ => Ok(()),
        }
    }

    fn wrong_tenant(&self, tenant: Uuid) -> String {
        let named = &self.named;
        match self.kind {
            BindingKind::Granted => format!(
                "Consent came from tenant {tenant}, but this connector is connected to tenant {}: consent does not \
                 move a connector to another tenant. To read another tenant, change the connector's tenant first.",
                self.id.map(|id| id.to_string()).unwrap_or_default()
            ),
            BindingKind::Pending => format!(
                "Consent came from another tenant ({tenant}) than the connector's ({named}). Sign in as an \
                 administrator of {named}, or change the connector's tenant first."
            ),
            BindingKind::Legacy => format!(
                "Consent came from another tenant ({tenant}) than the legacy connector's own ({named}); a migration \
                 must be consented in the tenant the connector reads."
            ),
        }
    }
}

impl Callback<'_> {
    /// Every check, then the sign-in proof or the commit; each `Err` says
    /// why not.
    async fn decide(&self) -> Result<Ending, Ending> {
        if let Some(error) = self.params.get("error") {
            return Err(self.declined(error));
        }
        if self.params.contains_key("code") {
            return self.proven().await;
        }
        let tenant = self.granted_tenant()?;
        let connector = self.connector().await?;
        let binding = Binding::of(&connector, self.state.migrate)?;
        binding.check(tenant)?;
        let name = self.confirm(&binding.cloud, tenant).await?;
        self.check_named_domain(&binding, tenant).await?;
        let held = self.check_claim(tenant).await?;
        if held {
            // The account proved it belongs to this tenant when it claimed it.
            return self.commit(connector, tenant, &name, held).await;
        }
        let proof = AwaitedProof {
            tenant,
            name,
            named: binding.named.clone(),
            scope: self.params.get("scope").cloned(),
            nonce: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(rand::random::<[u8; 24]>()),
        };
        self.ask_for_proof(&binding.cloud, proof).await
    }

    fn declined(&self, error: &str) -> Ending {
        // Anyone holding the state can send any text here: kept short and
        // on one line for the page and the audit record.
        let error: String = error
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let description: String = self
            .params
            .get("error_description")
            .and_then(|d| d.lines().next())
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let what = if self.state.proof.is_some() && !self.params.contains_key("admin_consent") {
            "The sign-in that confirms the consent did not complete."
        } else if error == "access_denied" {
            "Consent was not granted: the administrator cancelled or declined."
        } else {
            "Entra reported an error instead of a grant."
        };
        Ending::Declined(vec![
            what.to_owned(),
            format!("Entra said: {error}: {description}"),
            "The connector stays as it was. A Global Administrator (or Privileged Role Administrator) of the tenant \
             can start the consent again from the admin console."
                .to_owned(),
        ])
    }

    /// The tenant the response says granted consent (not yet believed).
    fn granted_tenant(&self) -> Result<Uuid, Ending> {
        if !self
            .params
            .get("admin_consent")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(Ending::Refused(
                "The response does not say that admin consent was granted.".into(),
            ));
        }
        self.params
            .get("tenant")
            .and_then(|t| Uuid::parse_str(t).ok())
            .ok_or_else(|| {
                Ending::Refused("The response does not name the tenant by its id.".into())
            })
    }

    pub(super) async fn connector(&self) -> Result<Connector, Ending> {
        let s = &self.state;
        match self.app.store.get_connector(&s.account, &s.connector).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Ending::Refused(
                "The connector this consent was for no longer exists.".into(),
            )),
            Err(e) => Err(store_down(e)),
        }
    }

    /// Whether Entra may still be replicating the grant.
    fn replicating(&self) -> bool {
        self.app.store.now() < self.granted_at + chrono::Duration::minutes(PROPAGATION_MINUTES)
    }

    /// Confirms the grant by signing in to `tenant` as the platform app and
    /// reading its id back (a forged tenant parameter fails here); returns
    /// the tenant's name. While a fresh grant replicates, tries again a few
    /// times within the request, then answers [`Ending::Pending`].
    async fn confirm(&self, cloud: &Cloud, tenant: Uuid) -> Result<String, Ending> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let left = (CONFIRM_BUDGET + CONFIRM_GRACE).saturating_sub(started.elapsed());
            let once = tokio::time::timeout(left, confirm_once(cloud, tenant, self.graph))
                .await
                .map_err(|_| Ending::Unavailable("Entra did not answer in time.".into()))?;
            let not_yet = match once? {
                Confirmation::Confirmed(name) => return Ok(name),
                Confirmation::NotYetSeen(why) => why,
            };
            if !self.replicating() {
                return Err(Ending::Failed(format!(
                    "Entra still does not confirm the grant {PROPAGATION_MINUTES} minutes after it was given. {not_yet}"
                )));
            }
            let wait = confirm_backoff(self.graph, attempt);
            attempt += 1;
            if attempt >= CONFIRM_ATTEMPTS || started.elapsed() + wait > CONFIRM_BUDGET {
                return Err(Ending::Pending(format!(
                    "The grant in tenant {tenant} is being confirmed by Entra: a new grant can take a few minutes \
                     to reach all of Entra, and until then Entra does not let the platform app sign in there."
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A connector named by domain (or a legacy connector) is checked once
    /// the grant is confirmed: its domain must lead to the tenant that
    /// consented. The platform app is in that tenant now, so a domain it
    /// cannot sign in to is another tenant.
    async fn check_named_domain(&self, b: &Binding, tenant: Uuid) -> Result<(), Ending> {
        if b.id.is_some() {
            return Ok(());
        }
        match read_tenant(&b.cloud, &b.named, self.graph).await {
            Ok((id, _)) if id == tenant => Ok(()),
            Ok(_) | Err(SignIn::NotYetSeen(_)) => Err(Ending::Refused(b.wrong_tenant(tenant))),
            Err(SignIn::Refused(why)) => Err(Ending::Refused(format!(
                "The connector's tenant {} could not be confirmed: {why}",
                b.named
            ))),
            Err(SignIn::Unavailable(why)) => Err(Ending::Unavailable(why)),
        }
    }

    /// Refuses a tenant another account holds; says whether this account
    /// held it already (a commit that fails then keeps the claim).
    pub(super) async fn check_claim(&self, tenant: Uuid) -> Result<bool, Ending> {
        match self.app.store.tenant_holder(&tenant).await {
            Ok(Some(holder)) if holder != self.state.account => {
                Err(Ending::Refused(OTHER_ACCOUNT.into()))
            }
            Ok(holder) => Ok(holder.is_some()),
            Err(e) => Err(store_down(e)),
        }
    }

    /// Spends the state, claims the tenant and records the grant, in that
    /// order: of two requests committing one consent only one gets past
    /// the first step, and the claim's own condition settles a race with
    /// another account.
    pub(super) async fn commit(
        &self,
        mut connector: Connector,
        tenant: Uuid,
        name: &str,
        held: bool,
    ) -> Result<Ending, Ending> {
        match self.app.store.take_ephemeral("consent", &self.key).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Ending::Refused(STATE_USED.into())),
            Err(e) => return Err(store_down(e)),
        }
        let unsaved = |e: StoreError| {
            Ending::Failed(format!(
                "The grant could not be saved ({e}); start the consent again."
            ))
        };
        match self
            .app
            .store
            .claim_tenant(&tenant, &connector.account)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => return Err(Ending::Refused(OTHER_ACCOUNT.into())),
            Err(e) => return Err(unsaved(e)),
        }
        let (outcome, legacy) = self.grant(&mut connector, tenant);
        if let Err(e) = self.app.store.update_connector(&connector).await {
            if !held
                && let Err(e) = self
                    .app
                    .store
                    .release_tenant(&tenant, &connector.account)
                    .await
            {
                tracing::error!(error = %e, %tenant, "a claim of a consent not saved was not released");
            }
            return Err(unsaved(e));
        }
        // A change of tenant by another connector of the account may have
        // released the claim between the claim and the save: claim again,
        // so a granted connector never stands without its claim.
        if let Ok(Some(other)) = self
            .app
            .store
            .claim_tenant(&tenant, &connector.account)
            .await
        {
            tracing::error!(%tenant, %other, "a tenant was claimed by another account while this consent was saved");
        }
        let name = if name.is_empty() {
            "(name not shown)"
        } else {
            name
        };
        let mut lines = vec![format!(
            "Consent is recorded for tenant {name} ({tenant}). Connector {} is active: it syncs in the next window, \
             or now with Sync now.",
            connector.id
        )];
        if let Some((client_id, secret)) = legacy {
            self.forget_legacy_secret(&connector, &secret).await;
            lines.push(format!(
                "The connector was migrated from the legacy app registration {client_id}. That app registration is \
                 no longer used by dirsync and may be deleted from your tenant; keep any app registrations used for \
                 single sign-on."
            ));
        }
        Ok(Ending::Recorded { outcome, lines })
    }

    /// Rewrites the connector as granted in `tenant` and active; a legacy
    /// one becomes a consent connector for its own tenant, keeping its
    /// stored directory and cursors (nothing is re-created or removed).
    /// Returns the legacy app and secret it no longer uses.
    fn grant(&self, c: &mut Connector, tenant: Uuid) -> (Outcome, Option<(Uuid, SecretRef)>) {
        let granted = |migrated_from| Consent::Granted {
            tenant_id: tenant,
            granted_at: self.granted_at,
            scope: self.scope(),
            started_by: self.state.started_by.clone(),
            migrated_from,
        };
        c.state = ConnectorState::Enabled;
        match &mut c.source {
            SourceConfig::EntraConsent { consent, .. } => {
                *consent = granted(None);
                (Outcome::Granted, None)
            }
            SourceConfig::EntraLegacy {
                cloud,
                tenant_domain,
                client_id,
                client_secret,
            } => {
                let legacy = (*client_id, client_secret.clone());
                c.source = SourceConfig::EntraConsent {
                    cloud: cloud.clone(),
                    tenant: Some(tenant_domain.to_string()),
                    consent: granted(Some(*client_id)),
                };
                (Outcome::Migrated, Some(legacy))
            }
            // `Binding::of` let no other source through.
            _ => (Outcome::Granted, None),
        }
    }

    /// The scope the grant carried: on the sign-in's return, as the grant's
    /// own response said.
    fn scope(&self) -> Option<String> {
        match &self.state.proof {
            Some(proof) if self.params.contains_key("code") => proof.scope.clone(),
            _ => self.params.get("scope").cloned(),
        }
    }

    /// Deletes the migrated connector's client secret if dirsync stored it:
    /// one named by hand may serve something else.
    async fn forget_legacy_secret(&self, c: &Connector, secret: &SecretRef) {
        let created = self.app.secret_name(&c.account, &c.id).ok();
        if created.as_ref() == Some(secret)
            && let Err(e) = self.app.secrets.delete(secret).await
        {
            tracing::warn!(error = %e, "the legacy client secret could not be deleted");
        }
    }

    /// Spends the state of a consent that is over (a commit has already),
    /// or remembers when a grant still being confirmed first arrived; then
    /// audits and shows the ending.
    async fn finish(&self, ending: Ending) -> CallbackPage {
        let spend = ending.is_final() && !matches!(ending, Ending::Recorded { .. });
        if spend && let Err(e) = self.app.store.take_ephemeral("consent", &self.key).await {
            tracing::error!(error = %e, "a finished consent's state was not spent");
        }
        if matches!(ending, Ending::Pending(_) | Ending::Unavailable(_)) {
            self.remember_grant_time().await;
        }
        let (outcome, detail) = ending.audit();
        let action = if self.state.migrate {
            AuditAction::Migration
        } else {
            AuditAction::Consent
        };
        let caller = self
            .state
            .started_by
            .as_deref()
            .unwrap_or("consent-callback");
        self.app
            .audit(
                AuditRecord::new(action, self.state.account.clone(), caller)
                    .connector(Some(self.state.connector.clone()))
                    .outcome(outcome, detail),
            )
            .await;
        ending.page()
    }

    /// Stores the first arrival's time in the state (never bringing back a
    /// state spent meanwhile), and keeps the state for the replication
    /// delay and the page's reloads after it.
    async fn remember_grant_time(&self) {
        if self.state.granted_at.is_some() {
            return;
        }
        let state = ConsentState {
            granted_at: Some(self.granted_at),
            ..self.state.clone()
        };
        let expires = self.granted_at
            + chrono::Duration::minutes(PROPAGATION_MINUTES + CONSENT_STATE_MINUTES);
        if let Err(e) = self
            .app
            .store
            .replace_ephemeral("consent", &self.key, &json!(state), expires)
            .await
        {
            tracing::error!(error = %e, "the grant's arrival time was not stored");
        }
    }
}

/// The wait before sign-in attempt `attempt + 2`: doubling from twice the
/// Graph policy's base (1 s, 2 s, 4 s, 8 s in production).
pub(super) fn confirm_backoff(graph: &GraphDeps, attempt: u32) -> Duration {
    let policy = &graph.policy;
    policy
        .base_backoff
        .saturating_mul(2u32 << attempt.min(8))
        .min(policy.max_backoff)
}

pub(super) enum Confirmation {
    /// The platform app signed in to the tenant, whose name this is.
    Confirmed(String),
    /// Entra does not know the grant yet, as this says.
    NotYetSeen(String),
}

/// One attempt to confirm a grant in `tenant`: a forged tenant parameter,
/// or one Entra refuses to sign in to, ends here.
pub(super) async fn confirm_once(
    cloud: &Cloud,
    tenant: Uuid,
    graph: &GraphDeps,
) -> Result<Confirmation, Ending> {
    match read_tenant(cloud, &tenant.to_string(), graph).await {
        Ok((id, name)) if id == tenant => Ok(Confirmation::Confirmed(name)),
        Ok((id, _)) => Err(Ending::Refused(format!(
            "The tenant that signed in ({id}) is not the tenant named in the response ({tenant})."
        ))),
        Err(SignIn::NotYetSeen(why)) => Ok(Confirmation::NotYetSeen(why)),
        Err(SignIn::Refused(why)) => Err(Ending::Failed(why)),
        Err(SignIn::Unavailable(why)) => Err(Ending::Unavailable(why)),
    }
}

/// Why a sign-in to a tenant as the platform app did not read the tenant.
pub(super) enum SignIn {
    /// Entra does not know the grant (yet): AADSTS700016 / 65001.
    NotYetSeen(String),
    /// Entra or Graph refused for another reason, which the message says.
    Refused(String),
    /// The sign-in service, Graph or the certificate's secret store could
    /// not be reached.
    Unavailable(String),
}

impl From<AuthError> for SignIn {
    fn from(e: AuthError) -> Self {
        match &e {
            AuthError::Refused { code: Some(c), .. } if GRANT_NOT_YET_SEEN.contains(c) => {
                SignIn::NotYetSeen(e.to_string())
            }
            AuthError::Unreachable { .. } | AuthError::Secret(_) => {
                SignIn::Unavailable(e.to_string())
            }
            _ => SignIn::Refused(e.to_string()),
        }
    }
}

impl From<SourceError> for SignIn {
    fn from(e: SourceError) -> Self {
        if e.is_transient() {
            SignIn::Unavailable(e.to_string())
        } else {
            SignIn::Refused(e.to_string())
        }
    }
}

/// Signs in to `tenant` (a GUID or a domain) as the platform app and reads
/// the tenant's (id, name) back.
pub(super) async fn read_tenant(
    cloud: &Cloud,
    tenant: &str,
    graph: &GraphDeps,
) -> Result<(Uuid, String), SignIn> {
    let source = GraphSource::for_tenant(cloud, tenant, graph)?;
    source.sign_in().await?;
    Ok(source.organization(&mut RequestStats::default()).await?)
}
