from common import *
from sklearn.linear_model import Ridge, LogisticRegression
from sklearn.model_selection import StratifiedKFold
dev=load('dev_routing'); gold=load('train_gold'); Ed=E('dev_routing'); Eg=E('train_gold')
yg=np.array([gain(r) for r in gold]); Fd=F([r['prompt'] for r in dev]); Fg=F([r['prompt'] for r in gold])
mu,sd=Fg.mean(0),Fg.std(0)+1e-6
Zg=(Fg-mu)/sd; Zd=(Fd-mu)/sd
strat=np.array([r['source']+str(int(gain(r))) for r in gold])
skf=list(StratifiedKFold(5,shuffle=True,random_state=0).split(Eg,strat))
def cv(fit_pred,label):
    oof=np.zeros(len(gold))
    for tr,te in skf: oof[te]=fit_pred(tr,te,Eg,Zg,Eg,Zg)
    out=report(gold,oof,'CV '+label)
    d=fit_pred(np.arange(len(gold)),None,Eg,Zg,Ed,Zd); report(dev,d,'dev '+label)
def ridge(a,useF=True,useE=True):
    def f(tr,te,E1,Z1,E2,Z2):
        X1=np.hstack(([E1] if useE else [])+([Z1] if useF else [])); X2=np.hstack(([E2] if useE else [])+([Z2] if useF else []))
        m=Ridge(alpha=a).fit(X1[tr],yg[tr]); return m.predict(X2 if te is None else X2[te])
    return f
def knn(k):
    def f(tr,te,E1,Z1,E2,Z2):
        Q=E2 if te is None else E2[te]; S=Q@E1[tr].T; idx=np.argpartition(-S,k,1)[:,:k]; return yg[tr][idx].mean(1)
    return f
for a in [10,30,100]: cv(ridge(a),f'ridge e+f {a}')
cv(ridge(1,useE=False),'ridge f only')
for k in [20,50]: cv(knn(k),f'knn {k}')
