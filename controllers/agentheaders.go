package controllers

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
)

// Agent headers: a number's spec.agent.headersSecretRef names a Secret whose
// keys become headers of the agent handshake (the agent's own credentials).
// The manager reads the Secret (the webhook server reads no tenant Secret)
// and publishes its headers with the accounts' tokens, only when the Secret
// carries LabelAgentHeaders: an editor of numbers who may not read Secrets
// cannot make the operator send an arbitrary Secret to an agent URL they
// chose.

// handshakeHeaders are set by the WebSocket client itself; a Secret cannot
// replace them.
func handshakeHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Host", "Connection", "Upgrade", "Content-Length", "Transfer-Encoding", "Te", "Trailer", "Proxy-Authorization":
		return true
	}
	return strings.HasPrefix(http.CanonicalHeaderKey(name), "Sec-Websocket-")
}

// agentHeadersProblem says why a number's headers Secret cannot be used, ""
// when it can (or the number names none). It reads Secret metadata from the
// manager's cache.
func (r *TwilioPhoneNumberReconciler) agentHeadersProblem(ctx context.Context, obj *twiliov1.TwilioPhoneNumber) (string, error) {
	if obj.Spec.Agent == nil || obj.Spec.Agent.HeadersSecretRef == nil {
		return "", nil
	}
	name := obj.Spec.Agent.HeadersSecretRef.Name
	secret := &metav1.PartialObjectMetadata{}
	secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("spec.agent.headersSecretRef names Secret %q, which does not exist in this namespace, so the number is not taken over", name), nil
		}
		return "", err
	}
	if secret.Labels[twiliov1.LabelAgentHeaders] != "true" {
		return fmt.Sprintf("spec.agent.headersSecretRef names Secret %q, which lacks the label %s: \"true\"; someone who may write Secrets must add it before its keys are sent to the agent, so the number is not taken over",
			name, twiliov1.LabelAgentHeaders), nil
	}
	return "", nil
}

// publishedAgentHeaders reads the labelled Secrets that numbers of published
// accounts name for their agents' headers.
func (p *credentialsPublisher) publishedAgentHeaders(ctx context.Context, published []credentials.Account) ([]credentials.AgentHeaders, error) {
	owners := map[types.NamespacedName]bool{}
	for _, a := range published {
		owners[types.NamespacedName{Namespace: a.Namespace, Name: a.Name}] = true
	}
	var numbers twiliov1.TwilioPhoneNumberList
	if err := p.client.List(ctx, &numbers); err != nil {
		return nil, fmt.Errorf("list TwilioPhoneNumbers: %w", err)
	}
	wanted := map[types.NamespacedName]bool{}
	for i := range numbers.Items {
		n := &numbers.Items[i]
		if n.Spec.Agent == nil || n.Spec.Agent.HeadersSecretRef == nil || !owners[types.NamespacedName{Namespace: n.Namespace, Name: n.Spec.AccountRef.Name}] {
			continue
		}
		wanted[types.NamespacedName{Namespace: n.Namespace, Name: n.Spec.Agent.HeadersSecretRef.Name}] = true
	}
	var out []credentials.AgentHeaders
	for key := range wanted {
		s := &corev1.Secret{}
		if err := p.apiReader.Get(ctx, key, s); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("get agent headers Secret %s: %w", key, err)
		}
		if s.Labels[twiliov1.LabelAgentHeaders] != "true" {
			continue
		}
		h := map[string]string{}
		for k, v := range s.Data {
			value := strings.TrimRight(string(v), "\r\n")
			if handshakeHeader(k) || strings.ContainsAny(value, "\r\n") {
				log.FromContext(ctx).Info("Agent headers Secret: key not sent", "secret", key.String(), "key", k)
				continue
			}
			h[k] = value
		}
		out = append(out, credentials.AgentHeaders{Namespace: key.Namespace, Secret: key.Name, Headers: h})
	}
	slices.SortFunc(out, func(a, b credentials.AgentHeaders) int {
		return cmp.Compare(a.Namespace+"/"+a.Secret, b.Namespace+"/"+b.Secret)
	})
	return out, nil
}
