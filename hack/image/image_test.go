package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/gomega"
)

const repoRoot = "../.."

// TestImages builds both images for this machine's platform the way
// `make images` does (OCI layouts, and a push to a registry: here an
// in-process one), then checks what a cluster will run: one static binary
// as the entrypoint, a non-root user, root certificates compiled in, and a
// binary that starts in a root filesystem holding nothing else.
func TestImages(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	regHost := strings.TrimPrefix(reg.URL, "http://")
	plat := "linux/" + runtime.GOARCH
	out := t.TempDir()

	g.Expect(run(ctx, options{root: repoRoot, out: out, push: regHost, tag: "test", platforms: []string{plat}})).To(Succeed())

	for _, img := range Images {
		t.Run(img, func(t *testing.T) {
			g := NewWithT(t)
			p, err := layout.FromPath(filepath.Join(out, img))
			g.Expect(err).NotTo(HaveOccurred())
			outer, err := p.ImageIndex()
			g.Expect(err).NotTo(HaveOccurred())
			outerManifest, err := outer.IndexManifest()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(outerManifest.Manifests).To(HaveLen(1))
			g.Expect(outerManifest.Manifests[0].Annotations).To(HaveKeyWithValue("org.opencontainers.image.ref.name", "test"))
			idx, err := outer.ImageIndex(outerManifest.Manifests[0].Digest)
			g.Expect(err).NotTo(HaveOccurred())

			// The pushed index is the one written to disk.
			pushed, err := remote.Index(mustTag(g, regHost+"/"+RepositoryPrefix+img+":test"), remote.WithContext(ctx))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pushed.Digest()).To(Equal(mustDigest(g, idx)))

			im, err := idx.IndexManifest()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(im.Manifests).To(HaveLen(1))
			g.Expect(im.Manifests[0].Platform).To(Equal(&v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
			image, err := idx.Image(im.Manifests[0].Digest)
			g.Expect(err).NotTo(HaveOccurred())

			cfg, err := image.ConfigFile()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cfg.Config.Entrypoint).To(Equal([]string{"/" + img}))
			g.Expect(cfg.Config.User).To(Equal(NonRoot), "the chart runs the pods as 65532 with runAsNonRoot")
			g.Expect([]string{cfg.OS, cfg.Architecture}).To(Equal([]string{"linux", runtime.GOARCH}))

			files := filesOf(g, image)
			g.Expect(files).To(HaveLen(1), "one binary on an empty base")
			bin := files[img]
			g.Expect(bin).NotTo(BeNil(), "the binary at /%s", img)
			g.Expect(bin.mode & 0o777).To(Equal(int64(0o755)))

			f, err := elf.NewFile(bytes.NewReader(bin.data))
			g.Expect(err).NotTo(HaveOccurred())
			for _, prog := range f.Progs {
				g.Expect(prog.Type).NotTo(Equal(elf.PT_INTERP), "statically linked: the image has no libc")
			}
			info, err := buildinfo.Read(bytes.NewReader(bin.data))
			g.Expect(err).NotTo(HaveOccurred())
			var deps []string
			for _, d := range info.Deps {
				deps = append(deps, d.Path)
			}
			g.Expect(deps).To(ContainElement("golang.org/x/crypto/x509roots/fallback"), "root certificates compiled in: the image has no CA bundle")

			runInEmptyRoot(t, img, bin.data)
		})
	}

	// The same sources give the same image.
	again, err := Build(ctx, repoRoot, t.TempDir(), Images[0], "test", []string{plat})
	g.Expect(err).NotTo(HaveOccurred())
	p, err := layout.FromPath(filepath.Join(out, Images[0]))
	g.Expect(err).NotTo(HaveOccurred())
	outer, err := p.ImageIndex()
	g.Expect(err).NotTo(HaveOccurred())
	om, err := outer.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(mustDigest(g, again)).To(Equal(om.Manifests[0].Digest), "reproducible build")
}

func TestRunRefusesNothingToDo(t *testing.T) {
	g := NewWithT(t)
	g.Expect(run(context.Background(), options{out: "x"})).To(MatchError(ContainSubstring("--tag")))
	g.Expect(run(context.Background(), options{tag: "v1"})).To(MatchError(ContainSubstring("nothing to do")))
}

// runInEmptyRoot starts the binary as 65532:65532 in a root filesystem that
// holds only the binary, as the image's container does, with flags it must
// refuse: it starts, parses them and exits 2 naming the flag.
func runInEmptyRoot(t *testing.T, img string, bin []byte) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: cannot chroot, so the binary is not started in its image's root filesystem")
		return
	}
	g := NewWithT(t)
	rootfs := t.TempDir()
	g.Expect(os.Chmod(rootfs, 0o755)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(rootfs, img), bin, 0o755)).To(Succeed()) // #nosec G306 -- an executable
	cmd := exec.Command("/"+img, "--public-url=http://voice.example.com")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	cmd.Dir = "/"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	g.Expect(errors.As(err, &exit)).To(BeTrue(), "started in the empty root: %v", err)
	g.Expect(exit.ExitCode()).To(Equal(2), stderr.String())
	g.Expect(stderr.String()).To(ContainSubstring("--public-url"))
}

type file struct {
	mode int64
	data []byte
}

// filesOf reads the image's flattened filesystem.
func filesOf(g Gomega, image v1.Image) map[string]*file {
	rc := mutate.Extract(image)
	defer func() { _ = rc.Close() }()
	files := map[string]*file{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		g.Expect(err).NotTo(HaveOccurred())
		data, err := io.ReadAll(tr)
		g.Expect(err).NotTo(HaveOccurred())
		files[strings.TrimPrefix(hdr.Name, "/")] = &file{mode: hdr.Mode, data: data}
	}
}

func mustTag(g Gomega, ref string) name.Tag {
	tag, err := name.NewTag(ref)
	g.Expect(err).NotTo(HaveOccurred())
	return tag
}

func mustDigest(g Gomega, idx v1.ImageIndex) v1.Hash {
	d, err := idx.Digest()
	g.Expect(err).NotTo(HaveOccurred())
	return d
}
