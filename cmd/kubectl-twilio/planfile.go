package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// fileSet is what plan -f read: the TwilioPhoneNumbers to plan, and the
// TwilioAccounts and Secrets that take precedence over the cluster's.
type fileSet struct {
	numbers  []*twiliov1.TwilioPhoneNumber
	accounts map[types.NamespacedName]*twiliov1.TwilioAccount
	secrets  map[types.NamespacedName]*corev1.Secret
	// ignored counts the objects of other kinds, by kind.
	ignored map[string]int
	// seen maps "kind namespace/name" to the file that held it.
	seen map[string]string
}

// readFiles reads the -f files ("-" is stdin, read once); objects without a
// namespace get ns.
func readFiles(paths []string, stdin io.Reader, ns string) (*fileSet, error) {
	fs := &fileSet{
		accounts: map[types.NamespacedName]*twiliov1.TwilioAccount{},
		secrets:  map[types.NamespacedName]*corev1.Secret{},
		ignored:  map[string]int{},
		seen:     map[string]string{},
	}
	readStdin := false
	for _, path := range paths {
		if path == "-" {
			if readStdin {
				return nil, errors.New("-f - is given more than once")
			}
			readStdin = true
			if err := fs.read(stdin, "stdin", ns); err != nil {
				return nil, err
			}
			continue
		}
		f, err := os.Open(path) //nolint:gosec // a file the user named on the command line, as kubectl -f
		if err != nil {
			return nil, err
		}
		err = fs.read(f, path, ns)
		_ = f.Close()
		if err != nil {
			return nil, err
		}
	}
	return fs, nil
}

// read decodes one file of YAML or JSON documents.
func (fs *fileSet) read(r io.Reader, name, ns string) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: document %d: %w", name, doc, err)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty document
		}
		if err := fs.add(raw, ns, name); err != nil {
			return fmt.Errorf("%s: document %d: %w", name, doc, err)
		}
	}
}

// add takes one object (a v1 List: each of its items).
func (fs *fileSet) add(raw json.RawMessage, ns, file string) error {
	var head struct {
		metav1.TypeMeta
		Metadata struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return err
	}
	gvk := head.GroupVersionKind()
	switch {
	case gvk.Kind == "":
		return errors.New("the object has no kind")
	case gvk.Group == "" && gvk.Version == "v1" && gvk.Kind == "List":
		for i, item := range head.Items {
			if err := fs.add(item, ns, file); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		return nil
	}
	key := types.NamespacedName{Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
	if key.Namespace == "" {
		key.Namespace = ns
	}
	if key.Name == "" {
		return fmt.Errorf("%s has no metadata.name", gvk.Kind)
	}
	id := gvk.Kind + " " + key.String()
	ours := gvk.Group == twiliov1.GroupVersion.Group
	if ours && gvk.Version != twiliov1.GroupVersion.Version {
		return fmt.Errorf("%s: apiVersion %s is not supported; want %s", id, head.APIVersion, twiliov1.GroupVersion)
	}
	var obj client.Object
	switch {
	case ours && gvk.Kind == "TwilioPhoneNumber":
		n := &twiliov1.TwilioPhoneNumber{}
		fs.numbers = append(fs.numbers, n)
		obj = n
	case ours && gvk.Kind == "TwilioAccount":
		a := &twiliov1.TwilioAccount{}
		fs.accounts[key] = a
		obj = a
	case gvk.Group == "" && gvk.Version == "v1" && gvk.Kind == "Secret":
		s := &corev1.Secret{}
		fs.secrets[key] = s
		obj = s
	default:
		fs.ignored[gvk.Kind]++
		return nil
	}
	if prev, dup := fs.seen[id]; dup {
		return fmt.Errorf("%s is also in %s", id, prev)
	}
	fs.seen[id] = file
	if err := json.Unmarshal(raw, obj); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	obj.SetNamespace(key.Namespace)
	if s, ok := obj.(*corev1.Secret); ok {
		// As the API server stores it: stringData merged into data.
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
	return nil
}

// ignoredNote says which objects of other kinds the files held, or "".
func (fs *fileSet) ignoredNote() string {
	if len(fs.ignored) == 0 {
		return ""
	}
	kinds := make([]string, 0, len(fs.ignored))
	n := 0
	for k, c := range fs.ignored {
		kinds = append(kinds, k)
		n += c
	}
	sort.Strings(kinds)
	return fmt.Sprintf("ignoring %d objects of other kinds in the files (%s)", n, strings.Join(kinds, ", "))
}

// overlayReader reads Secrets from the files first, then from the cluster,
// for the Connector (which reads a Secret's metadata, then its data).
type overlayReader struct {
	client.Reader
	secrets map[types.NamespacedName]*corev1.Secret
}

func (r overlayReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if s, ok := r.secrets[key]; ok {
		switch o := obj.(type) {
		case *corev1.Secret:
			s.DeepCopyInto(o)
			return nil
		case *metav1.PartialObjectMetadata:
			if o.GroupVersionKind().Kind == "Secret" {
				s.ObjectMeta.DeepCopyInto(&o.ObjectMeta)
				return nil
			}
		}
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}
