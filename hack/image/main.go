// Command image builds the project's two container images, manager and
// webhookserver, without a container engine, using go-containerregistry.
//
// Each image is one static Go binary (CGO_ENABLED=0, -trimpath) on an empty
// base: no shell, no package manager, nothing else to patch. The binary is
// the entrypoint and runs as 65532:65532, the user the chart and config/ ask
// for. Both binaries compile in Mozilla's root certificates
// (golang.org/x/crypto/x509roots/fallback), so HTTPS to Twilio and wss://
// agents works with no CA bundle in the image. Timestamps are fixed, so the
// same sources give the same digests.
//
// Usage:
//
//	go run ./hack/image --out bin/images --tag 0.1.0                    # OCI image layouts
//	go run ./hack/image --tag 0.1.0 --push ghcr.io/loquent               # build and push
//
// --out writes one OCI image layout per image (bin/images/manager, …), each
// holding a multi-platform index; `crane push --index` or `skopeo copy
// oci:bin/images/manager docker://…` can push it later. --push sends the
// indexes to <registry>/twilio-voice-operator-<name>:<tag>, with credentials
// from the Docker config (~/.docker/config.json, as `crane auth login` or
// `docker login` writes it).
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Images are the project's images: the command each one runs, by name.
var Images = []string{"manager", "webhookserver"}

// RepositoryPrefix names an image's repository: <registry>/<prefix><name>.
const RepositoryPrefix = "twilio-voice-operator-"

// NonRoot is the user:group the binaries run as.
const NonRoot = "65532:65532"

// epoch is every timestamp in the images, so builds are reproducible.
var epoch = time.Unix(0, 0).UTC()

type options struct {
	root      string   // the repository
	out       string   // where OCI layouts go ("" for none)
	tag       string   // image tag
	push      string   // registry to push to ("" for none)
	platforms []string // os/arch
}

func main() {
	var o options
	var platforms string
	flag.StringVar(&o.out, "out", "bin/images", "directory for the OCI image layouts, one per image (empty: do not write)")
	flag.StringVar(&o.tag, "tag", "", "image tag, for example the chart's appVersion (required)")
	flag.StringVar(&o.push, "push", "", "registry to push to, for example ghcr.io/loquent (empty: do not push)")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	flag.StringVar(&o.root, "root", ".", "the repository root")
	flag.Parse()
	o.platforms = strings.Split(platforms, ",")
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.tag == "" {
		return errors.New("--tag is required")
	}
	if o.out == "" && o.push == "" {
		return errors.New("nothing to do: set --out, --push or both")
	}
	work, err := os.MkdirTemp("", "image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	for _, img := range Images {
		idx, err := Build(ctx, o.root, work, img, o.tag, o.platforms)
		if err != nil {
			return err
		}
		digest, err := idx.Digest()
		if err != nil {
			return err
		}
		if o.out != "" {
			dir := filepath.Join(o.out, img)
			if err := WriteLayout(dir, idx, o.tag); err != nil {
				return err
			}
			fmt.Printf("%s: %s (%s) in %s\n", img, digest, strings.Join(o.platforms, ", "), dir)
		}
		if o.push != "" {
			ref, err := name.NewTag(fmt.Sprintf("%s/%s%s:%s", o.push, RepositoryPrefix, img, o.tag))
			if err != nil {
				return err
			}
			if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
				return fmt.Errorf("push %s: %w", ref, err)
			}
			fmt.Printf("%s: pushed %s@%s\n", img, ref, digest)
		}
	}
	return nil
}

// Build compiles ./cmd/<img> for each os/arch platform (in work) and returns
// a multi-platform OCI index of single-layer images.
func Build(ctx context.Context, root, work, img, tag string, platforms []string) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", p, err)
		}
		bin := filepath.Join(work, plat.OS+"-"+plat.Architecture, img)
		if err := compile(ctx, root, img, bin, plat); err != nil {
			return nil, err
		}
		image, err := imageOf(bin, img, tag, plat)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        image,
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	return idx, nil
}

// compile builds a static, reproducible binary of ./cmd/<img>.
func compile(ctx context.Context, root, img, out string, plat *v1.Platform) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./cmd/"+img)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+plat.OS, "GOARCH="+plat.Architecture)
	if plat.Variant != "" && plat.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(plat.Variant, "v"))
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/%s for %s: %w\n%s", img, plat, err, msg)
	}
	return nil
}

// imageOf puts the binary at /<img> in one layer on an empty base.
func imageOf(bin, img, tag string, plat *v1.Platform) (v1.Image, error) {
	data, err := os.ReadFile(bin) // #nosec G304 -- the binary this command just built
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: img, Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	image, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "hack/image: /" + img}})
	if err != nil {
		return nil, err
	}
	cfg, err := image.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = plat.OS, plat.Architecture, plat.Variant
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = []string{"/" + img}
	cfg.Config.User = NonRoot
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.source":   "https://github.com/loquent/twilio-voice-operator",
		"org.opencontainers.image.title":    RepositoryPrefix + img,
		"org.opencontainers.image.version":  tag,
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	return mutate.ConfigFile(image, cfg)
}

// WriteLayout writes idx as an OCI image layout in dir (replacing what was
// there), its manifest named by tag.
func WriteLayout(dir string, idx v1.ImageIndex, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}
