# Cross-validated figures on train_gold for the shipped recipe, replicated with scikit-learn (the Rust trainer uses
# the same models: subject softmax, IRT ridge on MMLU-Pro, gain ridge alpha=100, prior weight 3). 5 folds by id hash.
from common import *
from sklearn.linear_model import Ridge, LogisticRegression
gold=load('train_gold'); pro=load('train_routing'); Eg=E('train_gold'); Ep=E('train_routing')
yg=np.array([gain(r) for r in gold]); Fg=F([r['prompt'].strip() for r in gold])
cats=sorted(set(r['category'] for r in gold)); ci={c:k for k,c in enumerate(cats)}; y=np.array([ci[r['category']] for r in gold])
easy=np.array([np.mean(list(r['all_model_scores'].values())) for r in pro]); irt=Ridge(alpha=10).fit(Ep,easy)
fold=np.array([int(hashlib.sha256(r['id'].encode()).hexdigest(),16)%5 for r in gold])
def subj(tr,Q,lam=10):
    clf=LogisticRegression(C=10,max_iter=2000).fit(Eg[tr],y[tr]); glob=yg[tr].mean()
    sg=np.array([(yg[tr][y[tr]==k].sum()+lam*glob)/((y[tr]==k).sum()+lam) for k in clf.classes_]); return clf.predict_proba(Q)@sg
out=np.zeros(len(gold)); lenr=np.array([len(r['prompt']) for r in gold],float)
for f in range(5):
    tr=np.nonzero(fold!=f)[0]; te=np.nonzero(fold==f)[0]
    inner=np.zeros(len(gold))
    # inner out-of-fold prior on the training part, as the Rust trainer does
    sub=np.array([int(hashlib.sha256(('i'+gold[i]['id']).encode()).hexdigest(),16)%5 for i in tr])
    for g in range(5): inner[tr[sub==g]]=subj(tr[sub!=g],Eg[tr[sub==g]])
    mu,sd=Fg[tr].mean(0),Fg[tr].std(0)+1e-6; iv=irt.predict(Eg); im,isd=iv[tr].mean(),iv[tr].std()
    X=lambda idx,pr: np.hstack([Eg[idx],(Fg[idx]-mu)/sd,3*pr[:,None],((iv[idx]-im)/isd)[:,None]])
    m=Ridge(alpha=100).fit(X(tr,inner[tr]),yg[tr]); out[te]=m.predict(X(te,subj(tr,Eg[te])))
print('5-fold CV on train_gold (n=%d):'%len(gold))
for name,d in [('length',lenr),('router',out)]:
    res=report(gold,d,name)
    for s,mm in res.items(): print('   ',s,{k:round(v,3) for k,v in mm.items()})
