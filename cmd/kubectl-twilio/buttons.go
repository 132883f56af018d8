package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// button is one of the original system's per-number buttons: it sets
// spec.voiceRouting, and the operator does the rest.
type button struct {
	name    string
	routing twiliov1.VoiceRouting
	// done are the Ready=True reasons that mean the operator finished.
	done []string
}

var (
	configureButton = button{name: "configure", routing: twiliov1.VoiceRoutingEnabled,
		done: []string{twiliov1.ReasonConfigured, twiliov1.ReasonOriginalUnknown}}
	restoreButton = button{name: "restore", routing: twiliov1.VoiceRoutingDisabled,
		done: []string{twiliov1.ReasonRoutingDisabled}}
)

// waitPoll is how often --wait reads the object.
const waitPoll = 250 * time.Millisecond

// settling are the Ready=False reasons that still move on their own: --wait
// keeps waiting through them.
var settling = []string{twiliov1.ReasonProgressing, twiliov1.ReasonTakeoverPaced}

func press(ctx context.Context, o options, b button, ref string, out io.Writer) error {
	k8s, ns, err := kube(o)
	if err != nil {
		return err
	}
	obj, err := findNumber(ctx, k8s, ns, ref)
	if err != nil {
		return err
	}
	changed := obj.Spec.VoiceRouting != b.routing
	if changed {
		patch := fmt.Appendf(nil, `{"spec":{"voiceRouting":%q}}`, b.routing)
		if err := k8s.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("set spec.voiceRouting of TwilioPhoneNumber %s: %w", objName(obj), err)
		}
	}
	if _, err := fmt.Fprintln(out, intent(obj, b, changed)); err != nil {
		return err
	}
	if !o.wait {
		return nil
	}
	return waitFor(ctx, k8s, client.ObjectKeyFromObject(obj), obj.Generation, b, o.timeout, out)
}

// findNumber finds the TwilioPhoneNumber in ns named ref, or, when ref is
// a phone number (names cannot start with +), whose spec.phoneNumber is ref.
func findNumber(ctx context.Context, k8s client.Reader, ns, ref string) (*twiliov1.TwilioPhoneNumber, error) {
	if !strings.HasPrefix(ref, "+") {
		var obj twiliov1.TwilioPhoneNumber
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref}, &obj); err != nil {
			return nil, fmt.Errorf("get TwilioPhoneNumber %s/%s: %w", ns, ref, err)
		}
		return &obj, nil
	}
	var list twiliov1.TwilioPhoneNumberList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list TwilioPhoneNumbers in %s: %w", ns, err)
	}
	var names []string
	var found *twiliov1.TwilioPhoneNumber
	for i := range list.Items {
		if list.Items[i].Spec.PhoneNumber == ref {
			found = &list.Items[i]
			names = append(names, found.Name)
		}
	}
	switch len(names) {
	case 0:
		return nil, fmt.Errorf("no TwilioPhoneNumber in namespace %s has spec.phoneNumber %s", ns, ref)
	case 1:
		return found, nil
	default:
		slices.Sort(names)
		return nil, fmt.Errorf("%d TwilioPhoneNumbers in namespace %s have spec.phoneNumber %s (%s); name the one you mean", len(names), ns, ref, strings.Join(names, ", "))
	}
}

// intent is the line saying what the operator will now do.
func intent(obj *twiliov1.TwilioPhoneNumber, b button, changed bool) string {
	what := fmt.Sprintf("TwilioPhoneNumber %s (%s): voiceRouting set to %s", objName(obj), obj.Spec.PhoneNumber, b.routing)
	if !changed {
		what = fmt.Sprintf("TwilioPhoneNumber %s (%s): voiceRouting is already %s", objName(obj), obj.Spec.PhoneNumber, b.routing)
	}
	var will string
	switch {
	case !obj.DeletionTimestamp.IsZero():
		will = "but the object is being deleted: its deletionPolicy decides what happens to the number"
	case b.routing == twiliov1.VoiceRoutingEnabled && obj.Spec.Agent == nil:
		will = "but spec.agent is not set, so the operator will not take the number over (NoAgent); add spec.agent.url"
	case b.routing == twiliov1.VoiceRoutingEnabled && obj.HoldsOriginal():
		will = "the operator keeps the number's Voice URL at the webhook server; its saved original (" + describeSaved(*obj.Status.SavedRouting) + ") stays for Restore"
	case b.routing == twiliov1.VoiceRoutingEnabled:
		will = "the operator will save the number's current routing and point its Voice URL at the webhook server"
	case obj.HoldsOriginal():
		will = "the operator will put the saved original routing back in Twilio (" + describeSaved(*obj.Status.SavedRouting) + ") and then forget it"
	default:
		will = "the operator holds no saved routing for this number, so it leaves the number as it is"
	}
	line := what + "; " + will
	if c := readyCondition(obj); c != nil && c.Reason == twiliov1.ReasonConflict {
		line += ". Note: it is in Conflict: " + oneLine(c.Message)
	}
	return line
}

// waitFor waits until the operator reports generation gen: Ready=True with
// one of the button's reasons (success), or Ready=False with a reason that
// does not move on its own (failure, with the condition's reason and
// message). ctx bounds it.
func waitFor(ctx context.Context, k8s client.Reader, key client.ObjectKey, gen int64, b button, timeout time.Duration, out io.Writer) error {
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	var last twiliov1.TwilioPhoneNumber
	for {
		var obj twiliov1.TwilioPhoneNumber
		err := k8s.Get(ctx, key, &obj)
		switch {
		case err != nil && ctx.Err() != nil:
			return waitTimeout(&last, gen, timeout)
		case err != nil:
			return fmt.Errorf("get TwilioPhoneNumber %s: %w", key, err)
		}
		last = obj
		if obj.Spec.VoiceRouting != b.routing {
			return fmt.Errorf("TwilioPhoneNumber %s: spec.voiceRouting was changed to %s meanwhile", key, obj.Spec.VoiceRouting)
		}
		if c := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady); c != nil &&
			obj.Status.ObservedGeneration >= gen && c.ObservedGeneration >= gen {
			switch {
			case c.Status == metav1.ConditionTrue && slices.Contains(b.done, c.Reason):
				_, err := fmt.Fprintf(out, "TwilioPhoneNumber %s (%s): Ready, %s: %s\n", key, obj.Spec.PhoneNumber, c.Reason, oneLine(c.Message))
				return err
			case c.Status == metav1.ConditionTrue:
				return fmt.Errorf("TwilioPhoneNumber %s: the operator reports Ready %s, which is not what %s does: %s", key, c.Reason, b.name, oneLine(c.Message))
			case c.Status == metav1.ConditionFalse && !slices.Contains(settling, c.Reason):
				return fmt.Errorf("TwilioPhoneNumber %s: not Ready, %s: %s", key, c.Reason, oneLine(c.Message))
			}
		}
		select {
		case <-ctx.Done():
			return waitTimeout(&last, gen, timeout)
		case <-tick.C:
		}
	}
}

func waitTimeout(last *twiliov1.TwilioPhoneNumber, gen int64, timeout time.Duration) error {
	msg := fmt.Sprintf("timed out after %s waiting for the operator to report generation %d of TwilioPhoneNumber %s", timeout, gen, objName(last))
	c := readyCondition(last)
	switch {
	case last.Name == "":
		return errors.New(msg)
	case last.Status.ObservedGeneration < gen:
		msg += fmt.Sprintf(": it has observed generation %d so far (is the operator running?)", last.Status.ObservedGeneration)
	case c != nil:
		msg += fmt.Sprintf(": Ready is %s, %s: %s", c.Status, c.Reason, oneLine(c.Message))
	}
	return errors.New(msg)
}
