package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/loquent/twilio-voice-operator/internal/controlplane"
)

const (
	chartDir       = "charts/twilio-voice-operator"
	ciValues       = chartDir + "/ci/all-options-values.yaml"
	publicURL      = "https://voice.your-company.com" // the chart's renders; never contacted
	placeholderURL = "https://voice.example.com"      // config/default's PUBLIC_URL, refused until replaced
	defaultHelm    = "bin/helm-v3.22.0"
	componentLabel = "app.kubernetes.io/component"
)

var (
	root    string        // the repository, where the tools run
	helm    string        // path of the helm binary
	kubectl string        // path of kubectl (its kustomize renders config/)
	k8s     client.Client // admin client of the envtest API server
	restCfg *rest.Config  // its config, for impersonation
	admin   string        // an admin kubeconfig of the envtest API server, for helm
	scratch string        // a directory for the test binary's lifetime
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	var err error
	if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		return fail(err)
	}
	if helm = os.Getenv("HELM"); helm == "" {
		helm = filepath.Join(root, defaultHelm)
	}
	if _, err := os.Stat(helm); err != nil {
		return fail(fmt.Errorf("helm not found at %s (build it with `make helm`, or set HELM): %w", helm, err))
	}
	if kubectl, err = controlplane.Kubectl(root); err != nil {
		return fail(err)
	}
	if scratch, err = os.MkdirTemp("", "manifests-test-"); err != nil {
		return fail(err)
	}
	defer func() { _ = os.RemoveAll(scratch) }()
	// Keep helm away from the user's repositories, plugins and caches.
	for _, v := range []string{"HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"} {
		_ = os.Setenv(v, filepath.Join(scratch, v))
	}

	// No CRDs here: the tests install the ones config/ and the chart ship.
	env, cfg, err := controlplane.Start(root, false)
	if err != nil {
		return fail(err)
	}
	defer func() { _ = env.Stop() }()
	cfg.WarningHandlerWithContext = warnings
	restCfg = rest.CopyConfig(cfg)
	if k8s, err = client.New(cfg, client.Options{}); err != nil {
		return fail(err)
	}
	admin = filepath.Join(scratch, "admin.kubeconfig")
	if err := controlplane.WriteKubeconfig(env, admin, "manifests-admin", "system:masters"); err != nil {
		return fail(err)
	}
	return m.Run()
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "manifests:", err)
	return 1
}

// runTool runs a tool in the repository root and returns its stdout; the
// error carries stderr, which is where helm and kubectl explain themselves.
func runTool(bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// decode splits a multi-document YAML stream into objects, skipping
// documents that are empty or only comments (helm emits those).
func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decodeAll(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decodeAll(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split YAML: %w", err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("decode YAML document: %w\n%s", err, doc)
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "{}" {
			continue
		}
		// Unstructured's own decoding keeps integers as int64, as the API machinery expects.
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("decode object: %w\n%s", err, doc)
		}
		objs = append(objs, o)
	}
}

// A render is one way of installing the operator, rendered to objects.
type render struct {
	name string
	objs []*unstructured.Unstructured
}

var (
	rendersOnce sync.Once
	rendered    []render
	renderErr   error
)

// renders returns the three installations the content tests look at:
// config/default, and the chart with default values and with every option.
// They are rendered once per test binary.
func renders(t *testing.T) []render {
	t.Helper()
	rendersOnce.Do(func() {
		type source struct {
			name string
			args []string
			bin  string
		}
		for _, s := range []source{
			{"config/default", []string{"kustomize", "config/default"}, kubectl},
			{"chart (defaults)", helmTemplateArgs("tvo-default", "--set", "publicURL="+publicURL), helm},
			{"chart (all options)", helmTemplateArgs("tvo-ci", "--values", ciValues), helm},
		} {
			out, err := runTool(s.bin, s.args...)
			var objs []*unstructured.Unstructured
			if err == nil {
				objs, err = decodeAll(out)
			}
			if err != nil {
				renderErr = err
				return
			}
			rendered = append(rendered, render{name: s.name, objs: objs})
		}
	})
	if renderErr != nil {
		t.Fatal(renderErr)
	}
	return rendered
}

func helmTemplateArgs(namespace string, values ...string) []string {
	return append([]string{"template", "tvo", chartDir, "--namespace", namespace}, values...)
}

// filter returns the objects of kind whose component label is component
// ("" for any).
func filter(objs []*unstructured.Unstructured, kind, component string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (component == "" || o.GetLabels()[componentLabel] == component) {
			out = append(out, o)
		}
	}
	return out
}
