package webhookserver

// StaticRoutes is a RouteSource with a fixed table, for running the server
// without a cluster (benchmarks, embedding). It is always synced and safe for
// concurrent use.
type StaticRoutes struct {
	routes    map[string]Route
	byAccount map[string][]AccountValidator
}

var _ RouteSource = (*StaticRoutes)(nil)

// NewStaticRoutes serves routes and checks signatures with tokens (account
// SID → auth token).
func NewStaticRoutes(routes []Route, tokens map[string]string) *StaticRoutes {
	s := &StaticRoutes{routes: make(map[string]Route, len(routes)), byAccount: map[string][]AccountValidator{}}
	for _, r := range routes {
		s.routes[r.Number] = r
	}
	for sid, token := range tokens {
		s.byAccount[sid] = append(s.byAccount[sid], NewAccountValidator(sid, token))
	}
	return s
}

// Lookup implements RouteSource.
func (s *StaticRoutes) Lookup(number string) (Route, bool) {
	r, ok := s.routes[number]
	return r, ok
}

// Validators implements RouteSource.
func (s *StaticRoutes) Validators(accountSID string) []AccountValidator {
	return s.byAccount[accountSID]
}

// Synced implements RouteSource; a static table is always in sync.
func (s *StaticRoutes) Synced() bool { return true }
