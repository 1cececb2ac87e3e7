package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// api serves the downcase endpoints. Each answer is counted by status code;
// the counters are resolved once, not per request.
type api struct {
	maxParam int
	pub      interface{ offer([]byte) bool }
	requests *prometheus.CounterVec
	byCode   map[int]prometheus.Counter
}

func newAPI(maxParam int, pub interface{ offer([]byte) bool }, reg prometheus.Registerer) *api {
	a := &api{
		maxParam: maxParam,
		pub:      pub,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downcase_http_requests_total",
			Help: "HTTP requests to the API, by status code.",
		}, []string{"code"}),
		byCode: map[int]prometheus.Counter{},
	}
	for _, c := range []int{200, 400, 404, 405, 414} {
		a.byCode[c] = a.requests.WithLabelValues(strconv.Itoa(c))
	}
	reg.MustRegister(a.requests)
	return a
}

func (a *api) count(code int) {
	if c, ok := a.byCode[code]; ok {
		c.Inc()
		return
	}
	a.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

// register adds the API routes to mux: /downcase/ (and /downcase) answer
// text unless the client accepts JSON; /v1/downcase always answers JSON.
func (a *api) register(mux *http.ServeMux) {
	mux.Handle("/downcase/", a.handler(false))
	mux.Handle("/downcase", a.handler(false))
	mux.Handle("/v1/downcase", a.handler(true))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, http.StatusNotFound, "not found: try /downcase/?param=HeLLo")
	})
}

func (a *api) handler(alwaysJSON bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			a.fail(w, r, http.StatusMethodNotAllowed, "method not allowed: use GET or HEAD")
			return
		}
		param, code, problem := a.param(r)
		if code != 0 {
			a.fail(w, r, code, problem)
			return
		}
		lower := strings.ToLower(param)
		// One buffer is both the published message and the answer; neither
		// writes to it.
		text := make([]byte, 0, len("lower case of  is ")+len(param)+len(lower))
		text = append(append(append(append(text, "lower case of "...), param...), " is "...), lower...)
		a.pub.offer(text) // a full queue is counted; the answer does not depend on it
		a.count(http.StatusOK)
		if alwaysJSON || wantsJSON(r) {
			body, _ := json.Marshal(struct {
				Input string `json:"input"`
				Lower string `json:"lower"`
			}{param, lower})
			respond(w, r, http.StatusOK, "application/json", append(body, '\n'))
			return
		}
		respond(w, r, http.StatusOK, "text/plain; charset=utf-8", text)
	})
}

// param extracts and checks the param query value; code is 0 when it is
// good. It reads the query as url.ParseQuery does, and rejects what it
// rejects, without building a map for every request.
func (a *api) param(r *http.Request) (value string, code int, problem string) {
	found := false
	for rest := r.URL.RawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if strings.Contains(pair, ";") {
			return "", http.StatusBadRequest, "bad query string: invalid semicolon separator in query"
		}
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err := errors.Join(err1, err2); err != nil {
			return "", http.StatusBadRequest, "bad query string: " + err.Error()
		}
		if key == "param" && !found {
			value, found = val, true
		}
	}
	switch {
	case value == "":
		return "", http.StatusBadRequest, `missing query parameter "param", e.g. /downcase/?param=HeLLo`
	case len(value) > a.maxParam:
		return "", http.StatusRequestURITooLong, fmt.Sprintf(`"param" is %d bytes; the limit is %d`, len(value), a.maxParam)
	case !utf8.ValidString(value):
		return "", http.StatusBadRequest, `"param" is not valid UTF-8`
	}
	return value, 0, ""
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// fail answers a client error in the format the client asked for.
func (a *api) fail(w http.ResponseWriter, r *http.Request, code int, problem string) {
	a.count(code)
	if wantsJSON(r) || strings.HasPrefix(r.URL.Path, "/v1/") {
		body, _ := json.Marshal(map[string]string{"error": problem})
		respond(w, r, code, "application/json", append(body, '\n'))
		return
	}
	respond(w, r, code, "text/plain; charset=utf-8", []byte(problem+"\n"))
}

// Header values made once: setting them through Header.Set would
// canonicalise the names and allocate on every request.
var (
	headerNosniff = []string{"nosniff"}
	contentTypes  = map[string][]string{
		"text/plain; charset=utf-8": {"text/plain; charset=utf-8"},
		"application/json":          {"application/json"},
	}
)

// respond writes a complete answer; HEAD gets the headers only.
func respond(w http.ResponseWriter, r *http.Request, code int, contentType string, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypes[contentType]
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["X-Content-Type-Options"] = headerNosniff
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
