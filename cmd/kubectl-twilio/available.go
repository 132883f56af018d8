package main

// `kubectl twilio available` lists numbers on sale for a TwilioAccount's
// Twilio account, and with -o yaml prints a TwilioPhoneNumber that buys
// each (spec.acquire: Purchase). It only reads: one search request to
// Twilio, the TwilioAccount and its credentials Secret.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// availableOptions are the flags of `available`.
type availableOptions struct {
	account, country, numberType, areaCode, contains string
	limit                                            int
}

// availableFlagNames are the flags only `available` takes (-o is shared
// with numbers).
var availableFlagNames = []string{"o", "output", "account", "country", "type", "area-code", "contains", "limit"}

func registerAvailableFlags(fs *flag.FlagSet, a *availableOptions) {
	fs.StringVar(&a.account, "account", "", "available: the TwilioAccount whose Twilio account would buy the numbers")
	fs.StringVar(&a.country, "country", "US", "available: ISO 3166-1 country code of the numbers")
	fs.StringVar(&a.numberType, "type", string(twilio.NumberTypeLocal), "available: Local, Mobile or TollFree")
	fs.StringVar(&a.areaCode, "area-code", "", "available: area code (US and Canada), e.g. 415")
	fs.StringVar(&a.contains, "contains", "", "available: digits or letters the number contains; * matches any one digit")
	fs.IntVar(&a.limit, "limit", 20, "available: list at most this many numbers")
}

// validate says what is wrong with the flags, "" if nothing.
func (a availableOptions) validate() string {
	switch {
	case a.account == "":
		return "available needs --account NAME (a TwilioAccount of the namespace)"
	case a.limit < 1:
		return fmt.Sprintf("--limit must be at least 1, not %d", a.limit)
	}
	switch twilio.NumberType(a.numberType) {
	case twilio.NumberTypeLocal, twilio.NumberTypeMobile, twilio.NumberTypeTollFree:
		return ""
	}
	return fmt.Sprintf("--type must be Local, Mobile or TollFree, not %q", a.numberType)
}

func available(ctx context.Context, o options, out io.Writer) error {
	a := o.available
	k8s, ns, err := kube(o)
	if err != nil {
		return err
	}
	var acct twiliov1.TwilioAccount
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.account}, &acct); err != nil {
		return fmt.Errorf("get TwilioAccount %s/%s: %w", ns, a.account, err)
	}
	conn, err := (&controllers.Connector{Reader: k8s, DefaultMaxConcurrent: 1, AllowedAPIURLs: egress.SplitList(o.allowedAPIURLs)}).Connect(ctx, &acct)
	if err != nil {
		return fmt.Errorf("credentials of TwilioAccount %s/%s: %w", ns, a.account, err)
	}
	q := twilio.AvailableQuery{Country: strings.ToUpper(a.country), Type: twilio.NumberType(a.numberType),
		AreaCode: a.areaCode, Contains: a.contains, Limit: a.limit}
	nums, err := conn.Client.AvailableNumbers(ctx, q)
	if err != nil {
		return fmt.Errorf("search numbers on sale for Twilio account %s: %w", acct.Spec.AccountSID, err)
	}
	if o.output == "yaml" {
		return printPurchases(out, nums, ns, a.account)
	}
	return printAvailable(out, nums, q, acct.Spec.AccountSID)
}

func printAvailable(out io.Writer, nums []twilio.AvailableNumber, q twilio.AvailableQuery, accountSID string) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NUMBER\tLOCALITY\tREGION\tCAPABILITIES")
	for _, n := range nums {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.PhoneNumber, oneLine(orDash(n.Locality)), oneLine(orDash(n.Region)), capabilities(n.Capabilities))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "\n%d %s %s numbers on sale to Twilio account %s (nothing was bought)\n", len(nums), q.Country, q.Type, accountSID)
	return err
}

// capabilities lists what a number can receive: "voice,SMS,MMS".
func capabilities(c twilio.Capabilities) string {
	var have []string
	for _, x := range []struct {
		ok   bool
		name string
	}{{c.Voice, "voice"}, {c.SMS, "SMS"}, {c.MMS, "MMS"}, {c.Fax, "fax"}} {
		if x.ok {
			have = append(have, x.name)
		}
	}
	if len(have) == 0 {
		return "-"
	}
	return strings.Join(have, ",")
}

// printPurchases prints a TwilioPhoneNumber that buys each number. The
// object is written as a map because spec.acquire is newer than some
// copies of the API types; the agent is left as a commented placeholder,
// as a bought number must not route calls anywhere nobody chose.
func printPurchases(out io.Writer, nums []twilio.AvailableNumber, ns, account string) error {
	if len(nums) == 0 {
		return fmt.Errorf("no numbers on sale match")
	}
	for i, n := range nums {
		obj := map[string]any{
			"apiVersion": twiliov1.GroupVersion.String(),
			"kind":       "TwilioPhoneNumber",
			"metadata":   map[string]any{"namespace": ns, "name": objectName(twilio.Number{PhoneNumber: n.PhoneNumber})},
			"spec": map[string]any{
				"accountRef":  map[string]any{"name": account},
				"phoneNumber": n.PhoneNumber,
				"acquire":     "Purchase",
			},
		}
		data, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		where := strings.Trim(strings.Join([]string{n.Locality, n.Region}, " "), " ")
		text := "# " + oneLine(fmt.Sprintf("%s %s (%s). Applying this buys the number when TwilioAccount %s allows purchases.",
			n.PhoneNumber, orDash(where), capabilities(n.Capabilities), account)) + "\n" +
			string(data) + "  # agent:\n  #   url: wss://agent.example.com/media\n"
		if i > 0 {
			text = "---\n" + text
		}
		if _, err := io.WriteString(out, text); err != nil {
			return err
		}
	}
	return nil
}
