// Package connection is the levelhost SDK's help with connections for Go
// plugins: a net/http RoundTripper over wasi:http, so a plugin calls the
// other systems of its integration with Go's own http.Client.
// `levelhost new --lang go` copies it into the project as
// levelhost/connection/connection.go; import it (wit_component/levelhost/connection)
// only in a plugin whose plugin.toml names connections, since `levelhost
// build` gives only those plugins wasi:http:
//
//	client := connection.Client()
//	resp, err := client.Post("https://ticketing/api/Tickets", "application/json", bytes.NewReader(ticket))
//
// The host of the URL is the connection's name in levelhost.toml, never its
// real address: the host sends the request there with the credential only it
// holds, if the grant has a route for the method and path. A request the
// grant does not allow fails with an error whose text starts with "denied:"
// and names the route or rule. The answer's body is read whole before
// RoundTrip returns (at most the grant's max_response_kb).
package connection

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/wasi_http_outgoing_handler"
	"wit_component/wasi_http_types"
	"wit_component/wasi_io_streams"
)

// Transport sends requests through the host's wasi:http, to connections.
type Transport struct{}

// Client is an http.Client whose requests go to connections. It follows no
// redirect itself: a 3xx comes back as it is, as the host's own requests do.
func Client() *http.Client {
	return &http.Client{
		Transport: Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// RoundTrip sends one request and reads its answer whole.
func (Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		read, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = read
	}
	var scheme wasi_http_types.Scheme
	switch req.URL.Scheme {
	case "https":
		scheme = wasi_http_types.MakeSchemeHttps()
	case "http":
		scheme = wasi_http_types.MakeSchemeHttp()
	default:
		return nil, fmt.Errorf("%q is not an http:// or https:// URL naming a connection", req.URL.String())
	}
	var entries []witTypes.Tuple2[string, []uint8]
	for name, values := range req.Header {
		for _, value := range values {
			entries = append(entries, witTypes.Tuple2[string, []uint8]{F0: strings.ToLower(name), F1: []byte(value)})
		}
	}
	fields := wasi_http_types.FieldsFromList(entries)
	if fields.IsErr() {
		return nil, errors.New("a header of the request was refused")
	}
	request := wasi_http_types.MakeOutgoingRequest(fields.Ok())
	refused := func(what string) error { return fmt.Errorf("the request's %s was refused", what) }
	if request.SetMethod(method(req.Method)).IsErr() {
		return nil, refused("method")
	}
	if request.SetScheme(witTypes.Some(scheme)).IsErr() {
		return nil, refused("scheme")
	}
	if request.SetAuthority(witTypes.Some(req.URL.Host)).IsErr() {
		return nil, refused("host")
	}
	if request.SetPathWithQuery(witTypes.Some(req.URL.RequestURI())).IsErr() {
		return nil, refused("path")
	}
	outgoing := request.Body()
	if outgoing.IsErr() {
		return nil, refused("body")
	}
	// Sent first, so the host reads the body as it is written.
	handled := wasi_http_outgoing_handler.Handle(request, witTypes.None[*wasi_http_types.RequestOptions]())
	if handled.IsErr() {
		return nil, codeError(handled.Err())
	}
	future := handled.Ok()
	defer future.Drop()
	writeBody(outgoing.Ok(), body)
	pollable := future.Subscribe()
	pollable.Block()
	pollable.Drop()
	got := future.Get()
	if got.IsNone() || got.Some().IsErr() {
		return nil, errors.New("the answer was lost")
	}
	if got.Some().Ok().IsErr() {
		return nil, codeError(got.Some().Ok().Err())
	}
	response := got.Some().Ok().Ok()
	defer response.Drop()
	header := http.Header{}
	headers := response.Headers()
	for _, entry := range headers.Entries() {
		header.Add(entry.F0, string(entry.F1))
	}
	headers.Drop()
	answer, err := readBody(response)
	if err != nil {
		return nil, err
	}
	status := int(response.Status())
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(answer)),
		ContentLength: int64(len(answer)),
		Request:       req,
	}, nil
}

func method(name string) wasi_http_types.Method {
	switch strings.ToUpper(name) {
	case "", "GET":
		return wasi_http_types.MakeMethodGet()
	case "HEAD":
		return wasi_http_types.MakeMethodHead()
	case "POST":
		return wasi_http_types.MakeMethodPost()
	case "PUT":
		return wasi_http_types.MakeMethodPut()
	case "PATCH":
		return wasi_http_types.MakeMethodPatch()
	case "DELETE":
		return wasi_http_types.MakeMethodDelete()
	case "OPTIONS":
		return wasi_http_types.MakeMethodOptions()
	default:
		return wasi_http_types.MakeMethodOther(name)
	}
}

// writeBody writes the request's body and ends it; the stream is dropped
// before the body is finished, as wasi:http asks.
func writeBody(outgoing *wasi_http_types.OutgoingBody, body []byte) {
	if stream := outgoing.Write(); stream.IsOk() {
		out := stream.Ok()
		for start := 0; start < len(body); start += 4096 {
			end := min(start+4096, len(body))
			if out.BlockingWriteAndFlush(body[start:end]).IsErr() {
				break
			}
		}
		out.Drop()
	}
	wasi_http_types.OutgoingBodyFinish(outgoing, witTypes.None[*wasi_http_types.Fields]())
}

func readBody(response *wasi_http_types.IncomingResponse) ([]byte, error) {
	consumed := response.Consume()
	if consumed.IsErr() {
		return nil, errors.New("the answer's body could not be read")
	}
	incoming := consumed.Ok()
	defer incoming.Drop()
	stream := incoming.Stream()
	if stream.IsErr() {
		return nil, errors.New("the answer's body could not be read")
	}
	in := stream.Ok()
	defer in.Drop()
	var answer []byte
	for {
		chunk := in.BlockingRead(64 * 1024)
		if chunk.IsOk() {
			answer = append(answer, chunk.Ok()...)
			continue
		}
		if chunk.Err().Tag() == wasi_io_streams.StreamError_Closed {
			return answer, nil
		}
		failed := chunk.Err().LastOperationFailed()
		text := failed.ToDebugString()
		failed.Drop()
		return nil, fmt.Errorf("the answer's body broke off: %s", text)
	}
}

// codeError is the host's reason when it gave one (a "denied: ..." refusal
// among them), else the wasi:http error code.
func codeError(code wasi_http_types.ErrorCode) error {
	if code.Tag() == wasi_http_types.ErrorCode_InternalError {
		if text := code.InternalError(); text.IsSome() {
			return errors.New(text.Some())
		}
	}
	return fmt.Errorf("wasi:http error %d", code.Tag())
}
