// Go net/http (standard library only): the agreement suite's route table, see tests/agreement.rs.
// ServeMux routes on the decoded, cleaned path; handlers serve HEAD with their GET code, as Go's
// method patterns do. Reports r.Header and the identity headers read through r.Header.Get.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
)

var api = []string{
	"X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-NAME",
	"X-MS-CLIENT-PRINCIPAL-IDP", "X-MS-TOKEN-AAD-ACCESS-TOKEN", "X-MS-TOKEN-AAD-ID-TOKEN",
	"Authorization", "X-ARR-ClientCert", "X-Original-URL", "Forwarded", "X-Real-IP",
}

type seen struct {
	Route   string             `json:"route"`
	Method  string             `json:"method"`
	Path    string             `json:"path"`
	Headers [][2]string        `json:"headers"`
	API     map[string]*string `json:"api"`
}

func report(w http.ResponseWriter, r *http.Request, route string) {
	s := seen{Route: route, Method: r.Method, Path: r.URL.Path, API: map[string]*string{}}
	for k, vs := range r.Header {
		for _, v := range vs {
			s.Headers = append(s.Headers, [2]string{k, v})
		}
	}
	for _, name := range api {
		if _, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
			v := r.Header.Get(name)
			s.API[name] = &v
		} else {
			s.API[name] = nil
		}
	}
	body, _ := json.Marshal(s)
	w.Header().Set("X-Agree-Report", base64.StdEncoding.EncodeToString(body))
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprint(w, "ok\n")
}

// route answers `methods` with `id`; GET covers HEAD.
func route(mux *http.ServeMux, pattern string, table map[string]string) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		if m == http.MethodHead {
			m = http.MethodGet
		}
		id, ok := table[m]
		if !ok {
			id, ok = table["*"]
		}
		if !ok {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		report(w, r, id)
	})
}

func main() {
	mux := http.NewServeMux()
	route(mux, "/admin", map[string]string{"*": "admin"})
	route(mux, "/admin/", map[string]string{"*": "admin"})
	route(mux, "/odata/$batch", map[string]string{"POST": "batch"})
	route(mux, "/odata/", map[string]string{"GET": "odata"})
	route(mux, "/items/", map[string]string{"GET": "item_get", "DELETE": "item_delete"})
	route(mux, "/reports", map[string]string{"GET": "report"})
	route(mux, "/public/page", map[string]string{"GET": "public"})
	route(mux, "/public/me", map[string]string{"GET": "public_me"})
	route(mux, "/public/secret", map[string]string{"POST": "public_secret"})
	route(mux, "/me", map[string]string{"GET": "me"})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("AGREEMENT_LISTENING %d\n", ln.Addr().(*net.TCPAddr).Port)
	http.Serve(ln, mux)
}
