// Package argocd holds the Argo CD customizations for twilio.loquent.io
// resources, laid out as Argo CD's own resource_customizations/ folder so
// that it can be contributed upstream as it is:
//
//	resource_customizations/twilio.loquent.io/<Kind>/
//	  health.lua, health_test.yaml, testdata/
//	  actions/discovery.lua, actions/<action>/action.lua,
//	  actions/action_test.yaml, actions/testdata/   (TwilioPhoneNumber)
//
// argocd-cm-snippet.yaml installs the same scripts through argocd-cm.
//
// The package has no code of its own, only tests:
//   - customizations_test.go runs every health_test.yaml and action_test.yaml
//     the way Argo CD's util/lua tests do, in argovm_test.go's replica of
//     Argo CD's Lua VM (Argo CD's packages do not build from the module proxy);
//   - argocd_test.go states the health rules in Go, documents what Argo CD
//     v3.5/v3.6 show for a deleting object, checks the snippet against the
//     files and that every condition reason has a fixture;
//   - record_test.go drives every state with the real controllers, envtest and
//     the Twilio emulator, and checks that the fixtures still match what the
//     operator writes.
//
// To record the fixtures again after a change to the operator:
//
//	RECORD_FIXTURES=1 go test -count=1 -run TestFixturesFromRealReconciles ./argocd/
package argocd
