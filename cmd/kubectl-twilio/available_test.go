package main

import (
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

var stockOnce sync.Once

// stockPortland puts three Portland numbers on sale (in the emulator every
// account sees the same market) and one toll-free number.
func stockPortland() {
	stockOnce.Do(func() {
		for _, n := range []twiliosim.AvailableNumber{
			{PhoneNumber: "+15035550140", Locality: "Portland", Region: "OR", PostalCode: "97201"},
			{PhoneNumber: "+15035550141", Locality: "Portland", Region: "OR", PostalCode: "97204"},
			{PhoneNumber: "+15035550142", Locality: "Portland", Region: "OR", Capabilities: &twiliosim.Capabilities{Voice: true}},
			{PhoneNumber: "+18885550143", Type: twiliosim.NumberTypeTollFree},
		} {
			sim.AddAvailable(n)
		}
	})
}

// The table lists what is on sale, and looking buys nothing: the plugin
// sent Twilio only GETs and wrote no Kubernetes object.
func TestAvailableListsNumbersOnSaleWithoutBuying(t *testing.T) {
	g := NewWithT(t)
	stockPortland()
	ns := namespace(t)
	before := snapshot(g, ns)
	onSale := len(sim.Available())
	sim.ResetRequests()

	out, errOut, code := kubectlTwilio("available", "--account", "acme", "-n", ns, "--area-code", "503")
	g.Expect(code).To(Equal(0), errOut)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NUMBER", "LOCALITY", "REGION", "CAPABILITIES"}))
	g.Expect(strings.Fields(lines[1])).To(Equal([]string{"+15035550140", "Portland", "OR", "voice,SMS,MMS"}))
	g.Expect(strings.Fields(lines[3])).To(Equal([]string{"+15035550142", "Portland", "OR", "voice"}))
	g.Expect(lines[len(lines)-1]).To(Equal("3 US Local numbers on sale to Twilio account " + planSID + " (nothing was bought)"))

	expectNoTwilioWrites(g)
	g.Expect(sim.CountRequests(twiliosim.KindListAvailable)).To(Equal(1))
	g.Expect(sim.Requests()).To(ContainElement(And(HaveField("Kind", twiliosim.KindListAvailable),
		HaveField("AccountSID", planSID), HaveField("Query", HaveKeyWithValue("AreaCode", []string{"503"})))))
	g.Expect(snapshot(g, ns)).To(Equal(before))
	g.Expect(sim.Available()).To(HaveLen(onSale))

	out, errOut, code = kubectlTwilio("available", "--account", "acme", "-n", ns, "--type", "TollFree", "--contains", "888")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring("+18885550143"))
	g.Expect(out).NotTo(ContainSubstring("+1503"))
}

// -o yaml prints ready-to-apply TwilioPhoneNumbers that buy the numbers,
// with the agent left for the user to fill in.
func TestAvailableYAMLPrintsPurchases(t *testing.T) {
	g := NewWithT(t)
	stockPortland()
	ns := namespace(t)
	sim.ResetRequests()

	out, errOut, code := kubectlTwilio("available", "--account", "acme", "-n", ns, "--contains", "5035550141", "-o", "yaml")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring(`phoneNumber: "+15035550141"`), "quoted, or YAML reads a number")
	g.Expect(out).To(ContainSubstring("  # agent:\n  #   url: wss://"))
	g.Expect(out).To(HavePrefix("# +15035550141 Portland OR (voice,SMS,MMS). Applying this buys the number"))
	var obj map[string]any
	g.Expect(yaml.Unmarshal([]byte(out), &obj)).To(Succeed())
	g.Expect(obj).To(Equal(map[string]any{
		"apiVersion": "twilio.loquent.io/v1alpha1",
		"kind":       "TwilioPhoneNumber",
		"metadata":   map[string]any{"name": "tel-15035550141", "namespace": ns},
		"spec": map[string]any{
			"accountRef":  map[string]any{"name": "acme"},
			"phoneNumber": "+15035550141",
			"acquire":     "Purchase",
		},
	}))
	expectNoTwilioWrites(g)

	out, _, code = kubectlTwilio("available", "--account", "acme", "-n", ns, "--area-code", "503", "--limit", "2", "-o", "yaml")
	g.Expect(code).To(Equal(0))
	g.Expect(strings.Split(out, "\n---\n")).To(HaveLen(2))
}

func TestAvailableErrorsSayWhatIsWrong(t *testing.T) {
	g := NewWithT(t)
	stockPortland()
	ns := namespace(t)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"available", "-n", ns}, 2, "--account"},
		{[]string{"available", "--account", "acme", "-n", ns, "--type", "Voip"}, 2, "--type must be"},
		{[]string{"available", "--account", "acme", "-n", ns, "--limit", "0"}, 2, "--limit"},
		{[]string{"available", "--account", "acme", "-n", ns, "--routing", "Enabled"}, 2, "-routing does not apply to available"},
		{[]string{"available", "--account", "acme", "-n", ns, "extra"}, 2, "Usage"},
		{[]string{"available", "--account", "missing", "-n", ns}, 1, "get TwilioAccount " + ns + "/missing"},
		{[]string{"available", "--account", "acme", "-n", ns, "--country", "XX"}, 1, "Twilio error 20404"},
		{[]string{"available", "--account", "acme", "-n", ns, "--area-code", "617", "-o", "yaml"}, 1, "no numbers on sale match"},
	} {
		out, errOut, code := kubectlTwilio(tc.args...)
		g.Expect(code).To(Equal(tc.code), "%v: %s%s", tc.args, out, errOut)
		g.Expect(errOut).To(ContainSubstring(tc.says), "%v", tc.args)
	}
}
