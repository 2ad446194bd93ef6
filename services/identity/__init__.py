"""Identity and permissions: who the caller is (passwords, access tokens, OIDC JWTs, UI sessions) and
what they may do (MLflow's READ < USE < EDIT < MANAGE, DENY, on experiments and registered models,
granted to users directly or through roles). A layer under the services, over services/db: tracking and
the registry check callers against the database themselves; the services without a database ask
`mlgrid.v1.IdentityService` (served by tracking) over gRPC."""
