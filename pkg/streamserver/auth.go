package streamserver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// The access a reader of a stream needs: get on the Trace.
const (
	traceResource = "traces"
	readVerb      = "get"
	// ViewerRole is the chart's ClusterRole that grants it, named in
	// refusals.
	ViewerRole = "gadgetpm-trace-viewer"
)

// identity is what a TokenReview said about a token.
type identity struct {
	// user is empty when the token was rejected; reason then says why.
	user   authenticationv1.UserInfo
	reason string
}

// decision is what a SubjectAccessReview said.
type decision struct {
	allowed bool
	reason  string
}

// authorizer checks a request's bearer token and its access to the
// Trace it asks for, then hands it to next.
type authorizer struct {
	tokens   authenticationclient.TokenReviewInterface
	reviews  authorizationclient.SubjectAccessReviewInterface
	prefix   string
	allowTTL time.Duration
	denyTTL  time.Duration
	log      logr.Logger
	next     http.Handler

	identities *ttlCache[identity]
	decisions  *ttlCache[decision]
}

func (a *authorizer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	token, ok := bearerToken(req)
	if !ok {
		a.refuse(w, req, http.StatusUnauthorized, "", "no bearer token: send the header \"Authorization: Bearer <token>\" with the token of a user or service account that may get traces.gadget.kinvolk.io in the Trace's namespace (for example from 'kubectl create token <service account> -n <namespace>')")
		return
	}
	sum := sha256.Sum256([]byte(token))
	tokenKey := hex.EncodeToString(sum[:])
	id, err := a.identify(req, token, tokenKey)
	if err != nil {
		a.log.Error(err, "cannot authenticate a stream reader", "remote", req.RemoteAddr, "path", req.URL.Path)
		http.Error(w, "cannot check the bearer token with the API server (TokenReview): "+err.Error()+"; retry later", http.StatusServiceUnavailable)
		return
	}
	if id.user.Username == "" {
		a.refuse(w, req, http.StatusUnauthorized, "", "the API server rejected the bearer token (TokenReview): "+id.reason)
		return
	}
	key, ok := output.StreamKey(req.URL.Path, a.prefix)
	ns, name := key.Namespace, key.Name
	if !ok {
		// next answers what a valid path looks like.
		a.next.ServeHTTP(w, req)
		return
	}
	d, err := a.decide(req, id.user, tokenKey, ns, name)
	if err != nil {
		a.log.Error(err, "cannot authorize a stream reader", "remote", req.RemoteAddr, "user", id.user.Username, "trace", ns+"/"+name)
		http.Error(w, "cannot check access with the API server (SubjectAccessReview): "+err.Error()+"; retry later", http.StatusServiceUnavailable)
		return
	}
	if !d.allowed {
		msg := fmt.Sprintf("user %q may not %s %s.%s %q in namespace %q, which reading its stream needs: bind it to ClusterRole %s (or a role with that verb) in namespace %s",
			id.user.Username, readVerb, traceResource, gadgetv1alpha1.GroupVersion.Group, name, ns, ViewerRole, ns)
		if d.reason != "" {
			msg += " (" + d.reason + ")"
		}
		a.refuse(w, req, http.StatusForbidden, id.user.Username, msg)
		return
	}
	a.next.ServeHTTP(w, req)
}

// refuse answers status with msg on one line and logs it.
func (a *authorizer) refuse(w http.ResponseWriter, req *http.Request, status int, user, msg string) {
	a.log.Info("refused a stream reader", "status", status, "remote", req.RemoteAddr, "user", user, "path", req.URL.Path, "reason", msg)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gadgetpm trace streams"`)
	}
	http.Error(w, msg, status)
}

// identify returns who token is, from the cache or a TokenReview.
// Rejections are kept for denyTTL, identities for allowTTL.
func (a *authorizer) identify(req *http.Request, token, key string) (identity, error) {
	if id, ok := a.identities.get(key); ok {
		return id, nil
	}
	res, err := a.tokens.Create(req.Context(), &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return identity{}, fmt.Errorf("create TokenReview: %w", err)
	}
	if !res.Status.Authenticated || res.Status.User.Username == "" {
		reason := res.Status.Error
		if reason == "" {
			reason = "not authenticated"
		}
		id := identity{reason: reason}
		a.identities.set(key, id, a.denyTTL)
		return id, nil
	}
	id := identity{user: res.Status.User}
	a.identities.set(key, id, a.allowTTL)
	return id, nil
}

// decide returns whether user may get Trace ns/name, from the cache or
// a SubjectAccessReview.
func (a *authorizer) decide(req *http.Request, user authenticationv1.UserInfo, tokenKey, ns, name string) (decision, error) {
	key := tokenKey + "/" + ns + "/" + name
	if d, ok := a.decisions.get(key); ok {
		return d, nil
	}
	extra := make(map[string]authorizationv1.ExtraValue, len(user.Extra))
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	res, err := a.reviews.Create(req.Context(), &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Name: name, Verb: readVerb,
			Group: gadgetv1alpha1.GroupVersion.Group, Version: gadgetv1alpha1.GroupVersion.Version, Resource: traceResource,
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("create SubjectAccessReview: %w", err)
	}
	d := decision{allowed: res.Status.Allowed && !res.Status.Denied, reason: res.Status.Reason}
	ttl := a.allowTTL
	if !d.allowed {
		ttl = a.denyTTL
	}
	a.decisions.set(key, d, ttl)
	return d, nil
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(req *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(req.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}
