package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"aggregator/internal/eventually"
)

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "aggregator test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestWebConfig: with AGG_WEB_CONFIG_FILE (exporter-toolkit's format) the
// HTTP server speaks TLS and asks for a bcrypt basic-auth user, as
// node_exporter does with --web.config.file; a configuration that does
// not hold is a -check-config error naming the variable.
func TestWebConfig(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+
		"\nbasic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600)

	bound, _ := publishers(t)
	cmd, stderr, full := command(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_WEB_CONFIG_FILE": webConfig})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("aggregator stderr:\n%s", stderr.String())
		}
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(scheme, user, pass string) (int, string) {
		req, _ := http.NewRequest("GET", scheme+"://"+full["AGG_HTTP_ADDR"]+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		return httpDo(client, req)
	}
	eventually.Within(t, 10*time.Second, "HTTPS with the right user answers", func() bool {
		code, body := get("https", "prometheus", "right")
		return code == 200 && strings.Contains(body, "aggregator_messages_received_total")
	})
	if code, _ := get("https", "", ""); code != 401 {
		t.Errorf("HTTPS without a user: %d, want 401", code)
	}
	if code, _ := get("https", "prometheus", "wrong"); code != 401 {
		t.Errorf("HTTPS with a wrong password: %d, want 401", code)
	}
	if code, body := get("http", "prometheus", "right"); code == 200 {
		t.Errorf("plain HTTP answered %d: %.80s", code, body)
	}

	// A configuration that does not hold: exit 78 naming the variable.
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n"), 0o600)
	check, checkErr, _ := command(t, map[string]string{"AGG_CONNECT": "tcp://127.0.0.1:1", "AGG_WEB_CONFIG_FILE": bad}, "-check-config")
	if code := exitCode(check.Run()); code != 78 || !strings.Contains(checkErr.String(), "AGG_WEB_CONFIG_FILE") {
		t.Errorf("-check-config with a bad web configuration: exit %d:\n%s", code, checkErr)
	}
}
