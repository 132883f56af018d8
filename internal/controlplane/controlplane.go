// Package controlplane starts a throwaway Kubernetes control plane: envtest's
// kube-apiserver and etcd, which hack/build-envtest.sh (make envtest) builds
// from the Go module proxy into bin/k8s/<version>/. The test suites, the
// converge benchmark and make demo all start it this one way.
package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the Kubernetes release make envtest builds (the Makefile's
// KUBE_VERSION).
const KubeVersion = "1.37.2"

// Start starts kube-apiserver and etcd, with the project's CRDs installed
// and established when withCRDs. root is the repository root. When
// KUBEBUILDER_ASSETS is unset it is set to root/bin/k8s/KubeVersion.
// Stop the returned environment when done.
func Start(root string, withCRDs bool) (*envtest.Environment, *rest.Config, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		assets, err := filepath.Abs(filepath.Join(root, "bin", "k8s", KubeVersion))
		if err != nil {
			return nil, nil, err
		}
		if err := os.Setenv("KUBEBUILDER_ASSETS", assets); err != nil {
			return nil, nil, err
		}
	}
	env := &envtest.Environment{}
	if withCRDs {
		env.CRDDirectoryPaths = []string{filepath.Join(root, "config", "crd", "bases")}
		env.ErrorIfCRDPathMissing = true
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("start kube-apiserver and etcd from %s (`make envtest` builds them): %w",
			os.Getenv("KUBEBUILDER_ASSETS"), err)
	}
	return env, cfg, nil
}

// WriteKubeconfig adds a user with these groups to env and writes a
// kubeconfig for it to path.
func WriteKubeconfig(env *envtest.Environment, path, user string, groups ...string) error {
	u, err := env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return fmt.Errorf("add user %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig for %s: %w", user, err)
	}
	return os.WriteFile(path, data, 0o600)
}

// Kubectl returns the kubectl to run: $KUBECTL, else the one make envtest
// builds next to kube-apiserver (root/bin/k8s/KubeVersion/kubectl), else the
// first on PATH.
func Kubectl(root string) (string, error) {
	if k := os.Getenv("KUBECTL"); k != "" {
		return k, nil
	}
	built, err := filepath.Abs(filepath.Join(root, "bin", "k8s", KubeVersion, "kubectl"))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(built); err == nil {
		return built, nil
	}
	k, err := exec.LookPath("kubectl")
	if err != nil {
		return "", fmt.Errorf("kubectl not found: run `make envtest` to build it into %s, or set KUBECTL", filepath.Dir(built))
	}
	return k, nil
}
