package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// row is one number of the account.
type row struct {
	number twilio.Number
	owner  *twiliov1.TwilioPhoneNumber // nil when nothing manages it
	others int                         // further objects naming it (Conflict)
}

func numbers(ctx context.Context, o options, account string, out io.Writer) error {
	k8s, ns, err := kube(o)
	if err != nil {
		return err
	}
	var acct twiliov1.TwilioAccount
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: account}, &acct); err != nil {
		return fmt.Errorf("get TwilioAccount %s/%s: %w", ns, account, err)
	}
	conn, err := (&controllers.Connector{Reader: k8s, DefaultMaxConcurrent: 1, AllowedAPIURLs: egress.SplitList(o.allowedAPIURLs)}).Connect(ctx, &acct)
	if err != nil {
		return fmt.Errorf("credentials of TwilioAccount %s/%s: %w", ns, account, err)
	}
	live, err := conn.Client.ListNumbers(ctx)
	if err != nil {
		return fmt.Errorf("list the numbers of Twilio account %s: %w", acct.Spec.AccountSID, err)
	}
	var managed twiliov1.TwilioPhoneNumberList
	if err := k8s.List(ctx, &managed, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("list TwilioPhoneNumbers in %s: %w", ns, err)
	}
	rows := join(live, managed.Items, account)
	if o.output == "yaml" {
		return printManifests(out, rows, ns, account, twiliov1.VoiceRouting(o.routing))
	}
	return printTable(out, rows, acct.Spec.AccountSID)
}

// join pairs each live number with the TwilioPhoneNumbers of this account
// that name it; the owner is the one the operator lets act (OwnsBefore).
func join(live []twilio.Number, objs []twiliov1.TwilioPhoneNumber, account string) []row {
	byNumber := map[string][]*twiliov1.TwilioPhoneNumber{}
	for i := range objs {
		if objs[i].Spec.AccountRef.Name == account {
			byNumber[objs[i].Spec.PhoneNumber] = append(byNumber[objs[i].Spec.PhoneNumber], &objs[i])
		}
	}
	rows := make([]row, 0, len(live))
	for _, n := range live {
		r := row{number: n}
		for _, o := range byNumber[n.PhoneNumber] {
			if r.owner == nil || twiliov1.OwnsBefore(o, r.owner) {
				r.owner = o
			}
		}
		if c := len(byNumber[n.PhoneNumber]); c > 1 {
			r.others = c - 1
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.number.PhoneNumber, b.number.PhoneNumber) })
	return rows
}

func printTable(out io.Writer, rows []row, accountSID string) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NUMBER\tFRIENDLY NAME\tLIVE ROUTING\tMANAGED BY\tSTATE\tPREVIOUS URL")
	managed := 0
	for _, r := range rows {
		by, state, prev := "-", "-", "-"
		if r.owner != nil {
			managed++
			by = r.owner.Namespace + "/" + r.owner.Name
			if r.others > 0 {
				by += fmt.Sprintf(" (+%d in Conflict)", r.others)
			}
			state = readyReason(r.owner)
			if p := r.owner.Status.PreviousVoiceURL; p != nil {
				prev = *p
				if prev == "" {
					prev = "(none)"
				}
			}
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.number.PhoneNumber, oneLine(orDash(r.number.FriendlyName)), describe(r.number.Routing), by, state, prev)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "\n%d numbers in Twilio account %s, %d managed by a TwilioPhoneNumber\n", len(rows), accountSID, managed)
	return err
}

// readyReason is the reason of the object's Ready condition, "-" when it has none.
func readyReason(obj *twiliov1.TwilioPhoneNumber) string {
	if c := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady); c != nil && c.Reason != "" {
		return c.Reason
	}
	return "-"
}

// printManifests prints a TwilioPhoneNumber for every number nothing manages.
func printManifests(out io.Writer, rows []row, ns, account string, routing twiliov1.VoiceRouting) error {
	first := true
	for _, r := range rows {
		if r.owner != nil {
			continue
		}
		obj := twiliov1.TwilioPhoneNumber{
			TypeMeta:   metav1.TypeMeta{APIVersion: twiliov1.GroupVersion.String(), Kind: "TwilioPhoneNumber"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: objectName(r.number)},
			Spec: twiliov1.TwilioPhoneNumberSpec{
				AccountRef:   twiliov1.LocalObjectReference{Name: account},
				PhoneNumber:  r.number.PhoneNumber,
				VoiceRouting: routing,
			},
		}
		data, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		// Drop what a new object does not carry.
		text := strings.Replace(string(data), "  creationTimestamp: null\n", "", 1)
		text = strings.Replace(text, "status: {}\n", "", 1)
		text = strings.Replace(text, "  recording: {}\n", "", 1)
		text = "# " + oneLine(fmt.Sprintf("%s; live routing: %s", orDash(r.number.FriendlyName), describe(r.number.Routing))) + "\n" + text
		if !first {
			text = "---\n" + text
		}
		first = false
		if _, err := io.WriteString(out, text); err != nil {
			return err
		}
	}
	if first {
		return errors.New("every number of the account is already managed by a TwilioPhoneNumber")
	}
	return nil
}

// objectName is a DNS-1123 name for a number: tel-14155550100.
func objectName(n twilio.Number) string {
	return "tel-" + strings.TrimPrefix(n.PhoneNumber, "+")
}

// describe says where a number's calls go, in Twilio's order of precedence.
func describe(r twilio.Routing) string {
	switch {
	case r.TrunkSID != "":
		return "SIP trunk " + r.TrunkSID
	case r.VoiceApplicationSID != "":
		return "TwiML application " + r.VoiceApplicationSID
	case r.VoiceURL != "":
		return r.VoiceURL
	default:
		return "(nowhere)"
	}
}

// oneLine keeps a Twilio-provided value (a friendly name) from breaking a
// line of output: a YAML comment, a table row.
func oneLine(s string) string {
	return lineBreaks.Replace(s)
}

// lineBreaks are YAML's line breaks (1.1 counts NEL, LS and PS) and the tab.
var lineBreaks = strings.NewReplacer("\n", " ", "\r", " ", "\u0085", " ", "\u2028", " ", "\u2029", " ", "\t", " ")

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
