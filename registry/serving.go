package registry

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing/fstest"
	"text/template"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Serving modes, the values of BuildOptions.Serving (--serving).
const (
	// ServingAuto picks ServingNginx when the base runs nginx (its
	// entrypoint or cmd names nginx, as the default nginx-unprivileged
	// base's does) and ServingNone otherwise (scratch, other servers).
	ServingAuto = "auto"
	// ServingNginx adds the serving layer (NginxConfigPath) and writes a
	// precompressed NAME.gz beside each text file for gzip_static.
	ServingNginx = "nginx"
	// ServingNone leaves the base's server config alone and adds no .gz
	// files: the image holds the site as rendered.
	ServingNone = "none"
)

// LayerServing is the name of the layer that holds the server config. It
// lies below the site layers and changes only with the web root (and
// notesctl's config template), so a release almost never uploads it.
const LayerServing = "serving"

// NginxConfigPath is where the serving layer puts its server block: the
// file nginx's images (nginx, nginx-unprivileged) include from their
// nginx.conf, and the server they ship there, which it replaces.
const NginxConfigPath = "/etc/nginx/conf.d/default.conf"

// NginxPort is the port the server listens on: nginx-unprivileged's, and
// the container port of the scaffolded Deployment.
const NginxPort = 8080

// FingerprintPattern matches the names of fingerprinted assets: Hugo's
// resources.Fingerprint writes NAME.<hex digest>.EXT (sha256 by default:
// 64 digits; md5 32, sha512 128). Their content never changes under that
// name, so they are cached for a year without revalidation.
const FingerprintPattern = `\.[0-9a-f]{32,128}\.(css|js)$`

// nginxConfig is the server block. Every response says how to cache it, so
// that browsers never guess from Last-Modified (see contentEpoch):
//   - fingerprinted CSS and JS: public, a year, immutable;
//   - everything else (HTML, feeds, images, unfingerprinted CSS and JS):
//     no-cache, i.e. revalidate each time with the ETag, answered 304
//     while the file is unchanged;
//   - precompressed NAME.gz served in place of NAME to clients that accept
//     gzip (gzip_static, with Vary: Accept-Encoding);
//   - the site's own /404.html for missing pages, with status 404;
//   - X-Content-Type-Options: nosniff on every response.
//
// add_header is inherited only by locations without add_header of their
// own, so the immutable location repeats nosniff. Redirects stay relative
// (absolute_redirect off): behind a Service or an ingress the port and host
// nginx sees are not the ones the browser used.
var nginxConfig = template.Must(template.New("nginx").Parse(`# Written by notesctl (--serving nginx): serving for a Hugo site.
server {
    listen       {{.Port}};
    server_name  _;
    root         {{.Root}};
    index        index.html;

    absolute_redirect off;
    server_tokens     off;
    charset           utf-8;
    charset_types     text/css text/plain text/xml application/javascript application/json application/rss+xml application/atom+xml image/svg+xml;

    etag              on;
    if_modified_since exact;
    gzip_static       on;
    gzip_vary         on;

    error_page 404 /404.html;

    add_header Cache-Control "no-cache" always;
    add_header X-Content-Type-Options "nosniff" always;

    location / {
    }

    location ~* "{{.Fingerprint}}" {
        add_header Cache-Control "public, max-age=31536000, immutable" always;
        add_header X-Content-Type-Options "nosniff" always;
    }
}
`))

// nginxSafeRoot is what a web root may hold to be written into nginx's
// config unquoted and uninterpreted: no spaces, quotes, ';', braces or '$'
// (a variable).
var nginxSafeRoot = regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`)

// NginxConfig returns the server block for a site under webRoot.
func NginxConfig(webRoot string) ([]byte, error) {
	if webRoot == "" {
		webRoot = DefaultWebRoot
	}
	if _, err := cleanWebRoot(webRoot); err != nil {
		return nil, err
	}
	if !nginxSafeRoot.MatchString(webRoot) {
		return nil, fmt.Errorf("web root %q cannot be written into nginx's config (letters, digits, '.', '_', '-' and '/' only); choose another web root or --serving %s", webRoot, ServingNone)
	}
	var buf bytes.Buffer
	err := nginxConfig.Execute(&buf, struct {
		Port        int
		Root        string
		Fingerprint string
	}{NginxPort, webRoot, FingerprintPattern})
	return buf.Bytes(), err
}

// servingLayer is the layer with the nginx config. All its entries carry
// the config's FileTime, so the layer depends on the config bytes alone.
func servingLayer(webRoot string) (SiteLayer, error) {
	conf, err := NginxConfig(webRoot)
	if err != nil {
		return SiteLayer{}, err
	}
	name := strings.TrimPrefix(NginxConfigPath, "/")
	fsys := fstest.MapFS{name: {Data: conf, Mode: 0o644}}
	p := &layerPlan{files: []string{name}, dirs: map[string]bool{}}
	p.addDirs(path.Dir(name))
	files := []siteFile{{sum: sha256.Sum256(conf)}}
	l, err := writeLayer(fsys, "", FileTime(conf), p, files, gzipLevel)
	if err != nil {
		return SiteLayer{}, err
	}
	return SiteLayer{Name: LayerServing, Layer: l, Files: 1}, nil
}

// resolveServing turns the requested mode into ServingNginx or ServingNone.
// For ServingAuto it looks at the config of the first base image (the
// platforms of one base run the same server).
func resolveServing(mode string, scratch bool, bases []baseImage) (string, error) {
	switch mode {
	case ServingNginx, ServingNone:
		return mode, nil
	case "", ServingAuto:
	default:
		return "", fmt.Errorf("serving %q: want %s, %s or %s", mode, ServingAuto, ServingNginx, ServingNone)
	}
	if scratch || len(bases) == 0 {
		return ServingNone, nil
	}
	cfg, err := bases[0].image.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("reading the base config to choose the serving config: %w", err)
	}
	if runsNginx(cfg) {
		return ServingNginx, nil
	}
	return ServingNone, nil
}

// runsNginx reports whether the image's entrypoint or cmd starts nginx:
// an element whose last path element is nginx or nginx-debug.
func runsNginx(cfg *v1.ConfigFile) bool {
	if cfg == nil {
		return false
	}
	return slices.ContainsFunc(append(slices.Clone(cfg.Config.Entrypoint), cfg.Config.Cmd...), func(arg string) bool {
		b := path.Base(arg)
		return b == "nginx" || b == "nginx-debug"
	})
}
