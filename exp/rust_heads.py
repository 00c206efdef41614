from common import *
import json
H=json.load(open('models/classifier-heads.json'))
def sm(W,b,X): L=X@np.array(W).T+np.array(b); L-=L.max(1,keepdims=True); P=np.exp(L); return P/P.sum(1,keepdims=True)
def parts(rows,Em):
    Fm=F([r['prompt'].strip() for r in rows]); Z=(Fm-np.array(H['feature_mean']))/np.array(H['feature_scale'])
    prior=sm(H['subject']['weights'],H['subject']['bias'],Em)@np.array(H['subject_gain'])
    irt=(Em@np.array(H['irt']['weights'])+H['irt']['bias']-H['irt_mean'])/H['irt_scale']
    X=np.hstack([Em,Z,H['prior_weight']*prior[:,None],irt[:,None]])
    exam=X@np.array(H['gain']['weights'])+H['gain']['bias']
    pchat=1/(1+np.exp(-(Em@np.array(H['chat']['weights'])+H['chat']['bias'])))
    return exam,pchat,prior
if __name__=='__main__':
    dev=load('dev_routing'); Ed=E('dev_routing')
    exam,pchat,prior=parts(dev,Ed)
    for s in ['arena-bench-v1','routellm-gsm8k','routellm-mmlu']:
        idx=[i for i,r in enumerate(dev) if r['source']==s]; print(s,'pchat',pchat[idx].mean().round(3),'exam',exam[idx].mean().round(3),'prior',prior[idx].mean().round(3))
    report(dev,exam,'exam only'); report(dev,prior,'prior only')
    for cp in [0.15,0.2,0.25,0.3,0.4]:
        report(dev,(1-pchat)*exam+pchat*cp,f'gate cp={cp}')
